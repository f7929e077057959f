"""Flow: half-precision warping, the self-supervised POF pretraining, pof_path, the flow benchmark."""
import csv
import re
from pathlib import Path

import pytest
import torch
import yaml

from datasets_lmdb.__main__ import main as datasets_cli
from datasets_lmdb.synth import parse_source
from datasets_lmdb.layout import DatasetError
from hoffr_arch.archs.hoffr_arch import HOFFR
from hoffr_arch.archs.pof import POF
from hoffr_arch.archs.warp import flow_warp
from hoffr_arch.benchmarks.flow import main as flow_benchmark, pof_from_checkpoint, shifted_pair
from hoffr_arch.checkpoint import CheckpointError
from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset
from hoffr_arch.losses.flow_pretrain_loss import SelfSupervisedFlowLoss, occlusion_mask

from conftest import make_reds, python_m, smooth_frames, write_clip
from pipeline import logged_metrics

REPO = Path(__file__).resolve().parents[1]
SHIPPED_POF = REPO / 'hoffr_arch' / 'assets' / 'pof_x4.pth'


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
def test_zero_flow_warp_is_identity_in_every_precision(real_frame, dtype):
    img = real_frame[..., :64, :].to(dtype)  # 960 wide: a half-precision grid would be pixels off
    out = flow_warp(img, torch.zeros(1, 2, *img.shape[-2:], dtype=dtype))
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    # the grid is float32 whatever the dtype: only the rounding of the values themselves remains
    atol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-3}[dtype]
    assert torch.allclose(out.float(), img.float(), atol=atol)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_warp_matches_float32_for_a_known_shift(real_frame, dtype):
    img = real_frame[..., :32, :]
    flow = torch.zeros(1, 2, 32, 960)
    flow[:, 0] = 3.0  # out[p] = img[p + 3 px]
    ref = flow_warp(img, flow)
    assert torch.allclose(ref[..., :-3], img[..., 3:], atol=1e-5)
    out = flow_warp(img.to(dtype), flow.to(dtype)).float()
    # only the rounding of the input and output values: the positions are exact
    assert (out - ref).abs().max() < 1e-2


def _pair(real_frame, dx, dy):
    hr = real_frame[0, :, 100:356, 200:456]
    return shifted_pair(hr, dx, dy, 4)


def test_self_supervised_loss_prefers_the_true_motion(real_frame):
    prev, cur = _pair(real_frame, 1.5, -0.75)
    loss = SelfSupervisedFlowLoss(level_weights={'lr': 1.0}, smooth_weight=0.0)

    def value(dx, dy):
        fw = torch.tensor([dx, dy], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, 64, 64)
        return loss({'lr': fw}, {'lr': -fw}, (prev, cur))[0].item()

    true, zero, wrong = value(1.5, -0.75), value(0, 0), value(-1.5, 0.75)
    assert true < 0.5 * zero and true < 0.5 * wrong


def test_occlusion_mask_marks_inconsistent_flows():
    fw = torch.full((1, 2, 16, 16), 2.0)
    assert occlusion_mask(fw, -fw).min() == 1  # forward and backward cancel: nothing occluded
    assert occlusion_mask(fw, fw).max() == 0   # they do not: everything occluded


def test_occlusion_mask_waits_for_occlusion_start(real_frame):
    prev, cur = _pair(real_frame, 1.5, -0.75)
    fw, bw = {'lr': torch.full((1, 2, 64, 64), 2.0)}, {'lr': torch.full((1, 2, 64, 64), 2.0)}  # inconsistent
    masked = SelfSupervisedFlowLoss(level_weights={'lr': 1.0}, occlusion_start=10)
    plain = SelfSupervisedFlowLoss(level_weights={'lr': 1.0}, occlusion=False)
    assert masked(fw, bw, (prev, cur), iteration=9)[0] == plain(fw, bw, (prev, cur))[0]
    # every pixel is occluded from iteration 10: no photometric term is left (nor without an iteration)
    assert masked(fw, bw, (prev, cur), iteration=10)[1]['l_photo'] == 0
    assert masked(fw, bw, (prev, cur))[1]['l_photo'] == 0


def test_pof_path_loads_weights_and_names_a_bad_file(tmp_path):
    pof = POF(num_feat=8, num_block=1)
    for p in pof.parameters():
        torch.nn.init.normal_(p, std=0.01)
    path = tmp_path / 'pof.pth'
    torch.save({'params': pof.state_dict()}, path)
    net = HOFFR(num_feat=8, sr_num_feat=8, sr_num_block=1, db_num_feat=8, db_num_block=1, squeeze_factor=4,
                pof_num_feat=8, pof_num_block=1, pof_path=str(path))
    assert all(torch.equal(a, b) for a, b in zip(net.pof.state_dict().values(), pof.state_dict().values()))
    with pytest.raises(CheckpointError, match=r'pof\.pth: .*POF'):
        HOFFR(pof_num_feat=16, pof_path=str(path))
    with pytest.raises(CheckpointError, match='no such checkpoint'):
        HOFFR(pof_path=str(tmp_path / 'missing.pth'))


def test_shipped_pof_loads_from_any_directory_and_sees_motion(real_frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the YAMLs name it relative to the package: it must resolve anyway
    net = HOFFR(pof_path='hoffr_arch/assets/pof_x4.pth')
    prev, cur = _pair(real_frame, 1.5, -0.75)
    with torch.no_grad():
        flow = net.pof(prev, cur)['lr'][..., 8:-8, 8:-8].mean((-1, -2))[0]
    # an untrained POF says (0, 0); the shipped one follows the shift (see assets/README.md for its limits)
    assert abs(flow[0] - 1.5) < 0.4 and abs(flow[1] + 0.75) < 0.4, flow


def test_flow_pretraining_runs_through_basicsr_train_pipeline(tmp_path):
    """The shipped YAML, shortened, trains a POF on sharp pairs; its checkpoint loads as pof_path."""
    src = make_reds(tmp_path / 'src', {'000': 6, '001': 6}, h=64, w=96)
    make_reds(src, {'002': 4}, prefix='val', h=64, w=96)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    opt = yaml.safe_load((REPO / 'options' / 'pretrain' / 'pretrain_POF_x4.yml').read_text())
    data = tmp_path / 'lmdb'
    for phase, split in (('train', 'train'), ('val', 'val')):
        ds = opt['datasets'][phase]
        ds['dataroot_gt'] = str(data / split / 'sharp.lmdb')
        ds['dataroot_lq'] = str(data / split / 'sharp_bicubic.lmdb')
    del opt['datasets']['train']['meta_info_file']
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, interval_list=[1, 2], dataset_enlarge_ratio=1)
    opt['network_g'].update(num_feat=8, num_block=1)
    opt['train'].update(total_iter=4, pan_prob=0.5, pan_max=2)
    opt['val']['val_freq'] = 4
    opt['logger'].update(print_freq=1, save_checkpoint_freq=4)
    opt['name'] = 'pof_tiny'
    path = tmp_path / 'pof.yml'
    path.write_text(yaml.safe_dump(opt))
    proc = python_m('hoffr_arch.train', '-opt', path, cwd=tmp_path, env={'HOFFR_ROOT': tmp_path})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next((tmp_path / 'experiments' / 'pof_tiny').glob('train_*.log')).read_text()
    losses = [float(v) for v in re.findall(r'l_(?:photo|smooth): ([-+\d.eE]+)', log)]
    assert len(losses) == 8 and all(0 <= v < 1 for v in losses), losses  # both terms at each of 4 iterations
    # the validation by value: not warping is the mean absolute difference of the consecutive sharp LR
    # frames (0-255, 4-pixel border left out), and the LR warp is scored on the same pairs
    logged = logged_metrics(log, 'pof_val')
    assert len(logged) == 2 and set(logged[0]) == {'warp_lr', 'warp_hr', 'no_warp'}
    lq = VSRDBTestDataset(dict(opt['datasets']['val'], phase='val'))[0]['lq']
    no_warp = ((lq[1:] - lq[:-1]).abs() * 255)[..., 4:-4, 4:-4].mean()
    assert logged[0]['no_warp'] == pytest.approx(no_warp.item(), abs=1e-4)
    assert 0 < logged[0]['warp_lr'] < 1.2 * logged[0]['no_warp']
    ckpt = tmp_path / 'experiments' / 'pof_tiny' / 'models' / 'net_g_latest.pth'
    net = HOFFR(pof_num_feat=8, pof_num_block=1, pof_path=str(ckpt))
    state = torch.load(ckpt)['params_ema']
    assert torch.equal(net.pof.level_hr.body[-1].weight, state['level_hr.body.3.weight'])
    assert state['level_lr.body.3.weight'].abs().sum() > 0, 'four steps moved the zero-initialised head'
    # the flow benchmark reads a POF checkpoint's options from its weights
    assert pof_from_checkpoint(ckpt).level_lr.body[0].out_channels == 8


def test_pan_pairs_are_a_frame_and_its_own_translation(real_frame):
    """pan_pairs: with probability 1 each pair becomes (frame, frame moved by whole HR pixels within
    reach), its LR downscaled from the moved HR frame; with probability 0 nothing changes."""
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.models.flow_pretrain_model import pan_pairs
    hr = real_frame[..., 100:164, 200:264].repeat(3, 1, 1, 1)
    lr = torch.stack([imresize(f, 1 / 4) for f in hr])
    other_lr, other_hr = lr.flip(-1), hr.flip(-1)
    same = pan_pairs(lr, other_lr, hr, other_hr, 0.0, 2, 4)
    assert same[1] is other_lr and same[3] is other_hr
    prev, cur, prev_hr, cur_hr = pan_pairs(lr, other_lr, hr, other_hr, 1.0, 2, 4)
    assert prev is lr and prev_hr is hr
    for i in range(3):
        found = [(dx, dy) for dx in range(-8, 9) for dy in range(-8, 9)
                 if torch.allclose(cur_hr[i, :, 8:-8, 8:-8], hr[i, :, 8 + dy:56 + dy, 8 + dx:56 + dx], atol=1e-5)]
        assert len(found) == 1, 'moved by whole HR pixels, at most 2 LR pixels (8 HR) each way'
        assert torch.allclose(cur[i], imresize(cur_hr[i], 1 / 4), atol=1e-6)
    assert not torch.equal(cur_hr, other_hr)


def test_flow_benchmark_table_and_csv(tmp_path):
    folder = tmp_path / 'clip'
    write_clip(folder, smooth_frames(4, 128, 160, seed=3))  # drifting 2 HR px = 0.5 LR px per frame
    out = tmp_path / 'flow.csv'
    untrained = tmp_path / 'untrained.pth'
    torch.save({'params': POF().state_dict()}, untrained)  # every level's last convolution is zero
    assert flow_benchmark(['--data', str(folder), '--ckpt', f'shipped={SHIPPED_POF}', f'untrained={untrained}',
                           '--csv', str(out), '--max-shift', '2']) == 0
    rows = {r['method']: r for r in csv.DictReader(out.open())}
    assert set(rows) == {'zero flow', 'DIS medium', 'shipped', 'untrained'}
    # each level's own end-point error: a level that predicts no motion scores the mean shift length
    level = 'EPE known shifts, {} level (LR px)'
    for name in ('1/8', '1/4', '1/2'):
        assert float(rows['untrained'][level.format(name)]) == pytest.approx((0.6 + 1.15 + 2) / 3, abs=0.01)
        assert rows['zero flow'][level.format(name)] == ''
    assert float(rows['shipped'][level.format('1/2')]) < float(rows['untrained'][level.format('1/2')]) - 0.5
    assert float(rows['shipped']['LR warp MAE']) < float(rows['zero flow']['LR warp MAE'])
    # zero flow's end-point error is the mean shift length: (0.6 + 1.15 + 2) / 3 px
    assert float(rows['zero flow']['EPE known shifts (LR px)']) == pytest.approx((0.6 + 1.15 + 2) / 3, abs=0.01)
    assert float(rows['shipped']['EPE known shifts (LR px)']) < 0.5


def test_flow_benchmark_rejects_a_non_flow_checkpoint(tmp_path, capsys):
    path = tmp_path / 'x.pth'
    torch.save({'params': {'a': torch.zeros(1)}}, path)
    assert flow_benchmark(['--ckpt', str(path)]) == 2
    assert 'x.pth' in capsys.readouterr().err


def test_synth_source_options():
    path, opts = parse_source('clips/a.mp4@step=2,resize=480x270,exposure=0.5:2,split=val',
                              dict(step=1, resize=None, exposure=1.0, split='train'))
    assert path == 'clips/a.mp4' and opts == dict(step=2, resize=(480, 270), exposure=(0.5, 2.0), split='val')
    with pytest.raises(DatasetError, match="'speed=2'"):
        parse_source('a.mp4@speed=2', {})
    with pytest.raises(DatasetError, match="'split=test'"):
        parse_source('a.mp4@split=test', {})


def test_flow_seam_spynet_in_hoffr_and_its_weights_load_in_basicsr(tmp_path):
    from basicsr.archs.spynet_arch import SpyNet
    net = HOFFR(num_feat=8, sr_num_feat=8, sr_num_block=1, db_num_feat=8, db_num_block=1, squeeze_factor=4,
                flow={'type': 'SpyNetFlow'})
    out, aux = net(torch.rand(1, 2, 3, 64, 64), return_aux=True)
    assert out.shape == (1, 2, 3, 256, 256) and set(aux['flows']) == {'lr', 'hr'}
    assert type(net.pof).__name__ == 'SpyNetFlow'
    path = tmp_path / 'spynet.pth'
    torch.save({'params': net.pof.state_dict()}, path)
    plain = SpyNet(str(path))  # BasicVSR's spynet_path: strict load
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain(b, a), net.pof(a, b)['lr'])

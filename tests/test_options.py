"""Option files and run set-up: bad keys and values, bad data and a busy experiment name are one line
(exit 2) before any folder; ``--force_yml`` is checked as it will run; where runs and resumes are found."""
import os
import subprocess
import sys

import pytest
import yaml

from hoffr_arch import compat
from hoffr_arch._entry import project_root
from hoffr_arch.options import OptionsError, check_options

from pipeline import REPO, edit_options, run, train_options


def prepare_in(tmp_path, monkeypatch, argv):
    """``hoffr_arch._entry.prepare`` as ``python -m hoffr_arch.train`` runs it, with HOFFR_ROOT=tmp_path."""
    from hoffr_arch._entry import prepare
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path))
    monkeypatch.setattr(sys, 'argv', ['train'])
    monkeypatch.chdir(tmp_path)
    return prepare(argv, is_train=True)


DATA_ERRORS = {  # datasets.train changes -> what the one line must name
    'missing': ({'dataroot_gt': 'nowhere.lmdb'}, 'nowhere.lmdb not found'),
    'crop': ({'gt_size': 512}, 'smaller than the crop 128x128'),
    'short': ({'num_frame': 40}, 'num_frame 40 needs 40'),
}


@pytest.mark.parametrize('case', sorted(DATA_ERRORS))
def test_data_errors_are_one_line_before_any_experiment_folder(tmp_path, lmdb_data, monkeypatch, capsys, case):
    change, message = DATA_ERRORS[case]
    change = {k: str(tmp_path / v) if k == 'dataroot_gt' else v for k, v in change.items()}
    opt = edit_options(train_options(tmp_path, lmdb_data, name='bad'),
                       lambda cfg: cfg['datasets']['train'].update(change))
    with pytest.raises(SystemExit) as exit_:
        prepare_in(tmp_path, monkeypatch, ['-opt', str(opt)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'experiments' / 'bad').exists()


def test_a_data_error_from_the_command_line_is_one_line(tmp_path, lmdb_data):
    """The same check as a user meets it: ``python -m hoffr_arch.train``, exit 2, no traceback."""
    root = tmp_path / 'root'
    opt = edit_options(train_options(tmp_path, lmdb_data, name='bad'),
                       lambda cfg: cfg['datasets']['train'].update(dataroot_gt=str(tmp_path / 'nowhere.lmdb')))
    proc = run('hoffr_arch.train', opt, root, tmp_path, check=False)
    assert proc.returncode == 2 and 'nowhere.lmdb not found' in proc.stderr, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (root / 'experiments' / 'bad').exists()


def test_bad_option_file_fails_at_start_naming_the_key(tmp_path, lmdb_data, monkeypatch, capsys):
    opt = train_options(tmp_path, lmdb_data)
    cfg = yaml.safe_load(opt.read_text())
    cfg['train']['totl_iter'] = cfg['train'].pop('total_iter')
    opt.write_text(yaml.safe_dump(cfg))
    # the README's example, as it prints: the misspelling is named, not the key it misses
    with pytest.raises(OptionsError, match=r"unknown key 'train.totl_iter' \(did you mean 'total_iter'\?\)"):
        check_options(opt)
    cfg['train']['total_iter'] = cfg['train'].pop('totl_iter')
    del cfg['train']['scheduler']
    opt.write_text(yaml.safe_dump(cfg))
    with pytest.raises(OptionsError, match=r"missing key 'train.scheduler'"):
        check_options(opt)
    cfg['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [100], 'restart_weights': [1]}
    cfg['network_g']['num_blocks'] = 3
    cfg['datasets']['train']['gt_sise'] = 32
    opt.write_text(yaml.safe_dump(cfg))
    with pytest.raises(OptionsError, match=r"unknown key 'network_g.num_blocks'"):
        check_options(opt)
    del cfg['network_g']['num_blocks']
    opt.write_text(yaml.safe_dump(cfg))
    with pytest.raises(OptionsError, match=r"unknown key 'datasets.train.gt_sise' \(did you mean 'gt_size'\?\)"):
        check_options(opt)
    with pytest.raises(SystemExit) as exit_:
        prepare_in(tmp_path, monkeypatch, ['-opt', str(opt)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and "unknown key 'datasets.train.gt_sise'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'experiments').exists()
    for shipped in sorted((REPO / 'options').rglob('*.yml')):
        check_options(shipped, is_train='/test/' not in str(shipped))


def test_force_yml_is_checked_as_it_will_run(tmp_path, lmdb_data, monkeypatch):
    """The options are checked with ``--force_yml`` applied: an override can point a YAML whose data is
    elsewhere at real data (it failed on the un-overridden path before), and cannot smuggle in a typo."""
    opt = train_options(tmp_path, lmdb_data)
    real = yaml.safe_load(opt.read_text())['datasets']['train']['dataroot_gt']
    edit_options(opt, lambda cfg: cfg['datasets']['train'].update(dataroot_gt=str(tmp_path / 'elsewhere' / 'x.lmdb')))
    with pytest.raises(SystemExit) as missing:
        prepare_in(tmp_path, monkeypatch, ['-opt', str(opt)])
    assert missing.value.code == 2
    prepare_in(tmp_path, monkeypatch, ['-opt', str(opt), '--force_yml', f'datasets:train:dataroot_gt={real}',
                                       'train:total_iter=3'])
    forced = check_options(opt, force=[f'datasets:train:dataroot_gt={real}', 'train:total_iter=3',
                                       'train:scheduler:periods=[3]', 'val:save_img=false'])
    assert forced['datasets']['train']['dataroot_gt'] == real and forced['train']['total_iter'] == 3
    assert forced['train']['scheduler']['periods'] == [3] and forced['val']['save_img'] is False
    with pytest.raises(OptionsError, match=r"unknown key 'train.totl_iter'"):
        check_options(opt, force=['train:totl_iter=3'])
    with pytest.raises(OptionsError, match=r"no section 'trian'"):
        check_options(opt, force=['trian:total_iter=3'])


def test_project_root_does_not_depend_on_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv('HOFFR_ROOT', raising=False)
    monkeypatch.chdir(tmp_path)
    assert project_root() == REPO
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path))
    assert project_root() == tmp_path


def test_find_resume_state_ignores_partial_and_orphan_files(tmp_path):
    (tmp_path / 'training_states').mkdir()
    (tmp_path / 'models').mkdir()
    for it in (5, 10):
        (tmp_path / 'training_states' / f'{it}.state').write_bytes(b'x')
        (tmp_path / 'models' / f'net_g_{it}.pth').write_bytes(b'x')
    (tmp_path / 'training_states' / '15.state.tmp').write_bytes(b'x')
    (tmp_path / 'training_states' / '20.state').write_bytes(b'x')  # its network file is missing
    assert compat.find_resume_state(tmp_path) == str(tmp_path / 'training_states' / '10.state')


def test_a_schedule_ending_before_total_iter_is_refused(tmp_path, lmdb_data):
    """A resumed run may train past its old end (``test_training``), not past periods set in the YAML."""
    opt = edit_options(train_options(tmp_path, lmdb_data, name='longer', total_iter=4),
                       lambda cfg: cfg['train']['scheduler'].update(periods=[4]))
    short = r"'train.scheduler.periods' end at iteration 4, before 'train.total_iter' 7"
    with pytest.raises(OptionsError, match=short):
        check_options(opt, force=['train:total_iter=7'])
    assert check_options(opt, force=['train:total_iter=4'])['train']['total_iter'] == 4


BAD_RUNS = {  # --force_yml entries -> what the one line must name
    'num_feat': (['network_g:num_feat=abc'], "'network_g.num_feat' must be an integer, got 'abc'"),
    'lr': (['train:optim_g:lr=fast'], "'train.optim_g.lr' must be a number, got 'fast'"),
    'batch': (['datasets:train:batch_size_per_gpu=0'], "'datasets.train.batch_size_per_gpu' must be an integer >= 1"),
    'num_frame': (['datasets:train:num_frame=-1'], "'datasets.train.num_frame' must be an integer >= 1, got -1"),
    'name': (['name=../../x'], "'name' '../../x' must be a plain folder name"),
    'size': (['network_g:num_feat=-4'], 'network_g: cannot build HOFFR with these options'),
    'pretrain': (['path:pretrain_network_g=missing.pth'], 'missing.pth: no such checkpoint'),
    'bad_pretrain': (['path:pretrain_network_g=bad.pth'], 'bad.pth: not a readable checkpoint'),
}


@pytest.mark.parametrize('case', sorted(BAD_RUNS))
def test_bad_options_are_one_line_before_any_folder(tmp_path, lmdb_data, monkeypatch, capsys, case):
    force, message = BAD_RUNS[case]
    opt = train_options(tmp_path, lmdb_data, name='bad')
    (tmp_path / 'bad.pth').write_bytes(b'\x00' * 64)
    with pytest.raises(SystemExit) as exit_:
        prepare_in(tmp_path, monkeypatch, ['-opt', str(opt), '--force_yml', *force])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'experiments' / 'bad').exists() and not (tmp_path.parent / 'x').exists()


def test_a_running_experiment_name_is_refused_until_its_process_ends(tmp_path, lmdb_data, monkeypatch, capsys):
    opt = train_options(tmp_path, lmdb_data, name='busy')
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        lock = tmp_path / 'experiments' / 'busy.lock'
        lock.parent.mkdir()
        lock.write_text(f'{holder.pid}\n')
        with pytest.raises(SystemExit) as exit_:
            prepare_in(tmp_path, monkeypatch, ['-opt', str(opt)])
        assert exit_.value.code == 2 and f'in use by a running process (PID {holder.pid})' in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    prepare_in(tmp_path, monkeypatch, ['-opt', str(opt)])  # the holder is gone: its lock is taken over
    assert lock.read_text().split()[0] == str(os.getpid())

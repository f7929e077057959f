"""HOFFRModel: BasicSR's ``SRModel`` for video, trained with HOFFR's losses.

What it adds to ``SRModel`` (and why):
- feeds the sharp LR frames (``lq_sharp``) next to ``lq`` and ``gt``; the loss is the sum of
  ``train.losses``, a list of registered losses each taking named inputs (``LOSS_INPUTS``: its class's
  ``inputs``, or an ``inputs:`` key), each term logged; ``sr_opt``, ``db_opt`` and ``flow_opt`` are
  shorthands for HOFFR's three (L = L_SR + L_DB + L_OF);
- ``flow_lr_mul`` scales the learning rate of the POF (0 freezes it);
- from ``HOFFRBaseModel``: EMA, any ``torch.optim`` optimiser, ``train.time_budget``, a non-finite
  loss stopping the run before it touches the weights (naming the last good checkpoint);
- validation is our own: BasicSR's creates metric tensors on 'cuda', squeezes the shared input in
  place on CPU, refuses to save images during training and ignores EMA weights. Ours runs on any
  device and in DDP, adds the FMA-Net protocol (``skip_border_frames``) and clip-level metrics
  (tOF), and writes ``metrics_<dataset>.json`` when testing;
- optional bf16
  autocast (``train.bf16``, ``val.bf16``) on CUDA and on CPUs, where the network is also made
  channels-last for training (measured faster with bf16 on a CPU with AMX); bf16 pays on CPUs with
  AMX-BF16 or AVX512-BF16 only (elsewhere it is emulated, many times slower: a warning says so).
"""
import json
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import distributed as dist

from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import get_dist_info, master_only
from basicsr.utils.registry import MODEL_REGISTRY

from hoffr_arch.metrics.protocol import clip_scores, mean_over_clips
from hoffr_arch.precision import ComputePath, compile_option, compile_recurrent_step, cpu_bf16_features
from .base_model import HOFFRBaseModel, build_losses, loss_terms

# what a loss may take at each iteration: the HR output (n, t, c, H, W), the sharp HR frames, the
# blurry and sharp LR frames (n, t, c, h, w), the deblurred LR frames, the POF's flows (dict per scale)
LOSS_INPUTS = ('output', 'gt', 'lq', 'lq_sharp', 'deblurred', 'flows')
SHORTHANDS = {'sr_opt': 'l_sr', 'db_opt': 'l_db', 'flow_opt': 'l_flow'}


def hoffr_loss_inputs(net, lq, gt, lq_sharp=None):
    """What HOFFR's losses take (``LOSS_INPUTS``), running ``net`` on ``lq`` (n, t, c, h, w): the HR
    output (n, t, c, H, W) and ``gt``, ``lq``, ``lq_sharp``, the deblurred LR frames (n, t, c, h, w)
    and the POF's flows ({level: (n, t - 1, 2, h_k, w_k)}), outputs in float32 (under autocast
    too). ``loss_terms(losses, hoffr_loss_inputs(...))`` is one training step's loss: the model's,
    and the benchmarks' (``benchmarks.speed``, ``gpu_check``)."""
    output, aux = net(lq, return_aux=True)
    return {'output': output.float(), 'gt': gt, 'lq': lq, 'lq_sharp': lq_sharp,
            'deblurred': aux['deblurred'].float(), 'flows': {k: v.float() for k, v in aux['flows'].items()}}


def hoffr_loss_specs(train_opt):
    """The loss specifications of a ``train`` section: ``train.losses`` and the shorthands
    ``sr_opt``, ``db_opt``, ``flow_opt`` (copies)."""
    specs = [dict(spec) for spec in train_opt.get('losses') or []]
    specs += [dict(train_opt[key], name=name) for key, name in SHORTHANDS.items() if train_opt.get(key)]
    if not specs:
        raise KeyError('train.losses is required (e.g. [{type: SRLoss, loss_weight: 1.0}], or train.sr_opt)')
    return specs


def recipe_losses(train_opt, device='cpu'):
    """The losses of a ``train`` section as ``HOFFRModel`` builds them: [(name, inputs, module)]."""
    return build_losses(hoffr_loss_specs(train_opt), LOSS_INPUTS, device)


def training_step(net, optimizer, losses, lq, gt, lq_sharp=None, autocast=None):
    """One optimisation step of HOFFR ``net`` on a batch ((n, t, c, h, w) ``lq``/``lq_sharp``,
    (n, t, c, H, W) ``gt``) with HOFFRModel's loss (``loss_terms`` of ``hoffr_loss_inputs``), under
    ``autocast`` (a context; none: fp32); returns the total loss. The benchmarks time this."""
    optimizer.zero_grad(set_to_none=True)
    with autocast or nullcontext():
        terms, _ = loss_terms(losses, hoffr_loss_inputs(net, lq, gt, lq_sharp))
    total = sum(terms.values())
    total.backward()
    optimizer.step()
    return total


@MODEL_REGISTRY.register()
class HOFFRModel(HOFFRBaseModel):
    """Training and validation of HOFFR (see the module docstring for the options it adds)."""

    LOSS_INPUTS = LOSS_INPUTS
    TRAIN_OPTIONS = HOFFRBaseModel.TRAIN_OPTIONS | {*SHORTHANDS, 'flow_lr_mul', 'bf16', 'compile', 'log_batch_keys'}
    VAL_OPTIONS = HOFFRBaseModel.VAL_OPTIONS | {'skip_border_frames', 'bf16'}

    def model_to_device(self, net):
        if self.opt['is_train'] and self.opt['train'].get('flow_lr_mul', 1) == 0:
            net.pof.requires_grad_(False)  # before DDP wraps it: DDP must not wait for its gradients
            get_root_logger().info('POF frozen (train.flow_lr_mul: 0)')
        if self.opt['is_train'] and self.device.type == 'cpu' and self.opt['train'].get('bf16'):
            net = net.to(memory_format=torch.channels_last)  # before DDP wraps it, as above
            native = cpu_bf16_features()
            get_root_logger().info('bf16 autocast + channels-last on the CPU' + (
                f' ({"/".join(native)})' if native else
                ': WARNING this CPU has no AMX-BF16/AVX512-BF16, bf16 is emulated and much slower than fp32'))
        mode = compile_option(self.opt['train'].get('compile')) if self.opt['is_train'] else 'none'
        if mode != 'none':  # before DDP wraps it, as above; its state dict keeps its keys
            compile_recurrent_step(net, ComputePath(self.device, compile=mode))
            get_root_logger().info(f'train.compile: {mode} (the per-frame step and the POF, training forward only)')
        return super().model_to_device(net)

    def init_training_settings(self):
        super().init_training_settings()
        needs_sharp = sorted({name for name, inputs, _ in self.losses if 'lq_sharp' in inputs})
        if needs_sharp and not self.opt['datasets'].get('train', {}).get('dataroot_lq_sharp'):
            raise KeyError(f'train losses {", ".join(needs_sharp)} need the sharp LR frames: set '
                           'datasets.train.dataroot_lq_sharp')
        self.use_bf16 = bool(self.opt['train'].get('bf16')) and self.device.type in ('cuda', 'cpu')
        self.log_batch_keys = bool(self.opt['train'].get('log_batch_keys'))

    def loss_specs(self, train_opt):
        return hoffr_loss_specs(train_opt)

    def param_groups(self, params, lr):
        """One group, or with ``train.flow_lr_mul`` (not 0 or 1) the POF's parameters at ``lr`` times it.

        ``flow_lr_mul: 0`` freezes the POF (``model_to_device``: no gradient is computed for it at all,
        which also saves its backward pass): the pretrained flow is kept exactly.
        """
        flow_lr_mul = self.opt['train'].get('flow_lr_mul', 1)
        if flow_lr_mul in (0, 1):
            return params
        get_root_logger().info(f'POF learning rate x {flow_lr_mul}')
        pof_ids = {id(p) for p in self.get_bare_model(self.net_g).pof.parameters()}
        return [{'params': [p for p in params if id(p) not in pof_ids], 'lr': lr},
                {'params': [p for p in params if id(p) in pof_ids], 'lr': lr * flow_lr_mul}]

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        self.lq_sharp = data['lq_sharp'].to(self.device) if 'lq_sharp' in data else None
        self.batch_keys = data.get('key')

    def loss_inputs(self, current_iter):
        """The network on this batch: ``hoffr_loss_inputs``."""
        if self.log_batch_keys:
            get_root_logger().info(f'iter {current_iter} batch keys: {" ".join(self.batch_keys)}')
        given = hoffr_loss_inputs(self.net_g, self.lq, self.gt, self.lq_sharp)
        self.output = given['output']
        return given

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad(), self.autocast(bool(self.opt['val'].get('bf16')) and self.device.type in ('cuda', 'cpu')):
            self.output = net(self.lq).float()
        net.train(was_training)

    # --- validation -------------------------------------------------------------------------

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self._validate(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self._validate(dataloader, current_iter, tb_logger, save_img)

    def _validate(self, dataloader, current_iter, tb_logger, save_img):
        dataset = dataloader.dataset
        name = dataset.opt['name']
        with_metrics = bool(self.opt['val'].get('metrics'))
        if with_metrics:
            self._initialize_best_metric_results(name)  # once per dataset
        rank, world_size = get_dist_info()
        suffix = current_iter if self.opt['is_train'] else self.opt['val'].get('suffix') or self.opt['name']
        per_clip = {}
        for index in range(rank, len(dataset), world_size):
            data = dataset[index]
            clip = data['folder']
            # fresh batch tensors: nothing shared with the dataset item is changed in place
            self.feed_data({k: data[k].unsqueeze(0) for k in ('lq', 'gt') if k in data})
            self.test()
            outputs = [tensor2img(frame) for frame in self.output[0]]
            gts = [tensor2img(frame) for frame in self.gt[0]] if hasattr(self, 'gt') else None
            if save_img:
                folder = Path(self.opt['path']['visualization']) / name / clip
                for i, img in enumerate(outputs):
                    imwrite(img, str(folder / f'{i:08d}_{suffix}.png'))
            if with_metrics and gts is not None:  # hoffr_arch.metrics.protocol: FMA-Net's with skip_border_frames
                per_clip[clip] = clip_scores(outputs, gts, self.opt['val']['metrics'],
                                             self.opt['val'].get('skip_border_frames', 0))
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
        if world_size > 1:
            gathered = [None] * world_size
            dist.all_gather_object(gathered, per_clip)
            per_clip = {k: v for part in gathered for k, v in part.items()}
        if with_metrics and rank == 0 and per_clip:
            self.metric_results = mean_over_clips(per_clip.values())
            for metric, value in self.metric_results.items():
                self._update_best_metric_result(name, metric, value, current_iter)
            self._log_validation_metric_values(current_iter, name, tb_logger)
            if not self.opt['is_train']:
                self._write_metrics(name, per_clip)

    @master_only
    def _write_metrics(self, dataset_name, per_clip):
        path = Path(self.opt['path']['results_root']) / f'metrics_{dataset_name}.json'
        path.write_text(json.dumps({'dataset': dataset_name, 'average': self.metric_results, 'clips': per_clip,
                                    'skip_border_frames': self.opt['val'].get('skip_border_frames', 0)}, indent=2))
        get_root_logger().info(f'Metrics written to {path}')

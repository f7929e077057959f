"""HOFFRModel: BasicSR's ``SRModel`` for video, trained with HOFFR's losses.

What it adds to ``SRModel`` (and why):
- feeds the sharp LR frames (``lq_sharp``) next to ``lq`` and ``gt``; the loss is the sum of
  ``train.losses``, a list of registered losses each taking named inputs (``LOSS_INPUTS``: its class's
  ``inputs``, or an ``inputs:`` key), each term logged; ``sr_opt``, ``db_opt`` and ``flow_opt`` are
  shorthands for HOFFR's three (L = L_SR + L_DB + L_OF);
- ``flow_lr_mul`` scales the learning rate of the POF (0 freezes it); every optimiser BasicSR knows;
- a non-finite loss stops the run before it touches the weights, naming the last good checkpoint;
- validation is our own: BasicSR's creates metric tensors on 'cuda', squeezes the shared input in
  place on CPU, refuses to save images during training and ignores EMA weights. Ours runs on any
  device and in DDP, adds the FMA-Net protocol (``skip_border_frames``) and clip-level metrics
  (tOF), and writes ``metrics_<dataset>.json`` when testing;
- atomic checkpoints and DDP on CPU (gloo) as well as CUDA (``RunSafetyMixin``); optional bf16
  autocast (``train.bf16``, ``val.bf16``) on CUDA and on CPUs, where the network is also made
  channels-last for training (measured faster with bf16 on a CPU with AMX); bf16 pays on CPUs with
  AMX-BF16 or AVX512-BF16 only (elsewhere it is emulated, many times slower: a warning says so).
"""
import json
from collections import OrderedDict
from contextlib import nullcontext
from copy import deepcopy
from pathlib import Path

import torch
from torch import distributed as dist

from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.archs import build_network
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import get_dist_info, master_only
from basicsr.utils.registry import MODEL_REGISTRY

from hoffr_arch.metrics.protocol import clip_scores, mean_over_clips
from hoffr_arch.precision import ComputePath, compile_option, compile_recurrent_step, cpu_bf16_features
from .run_safety import RunSafetyMixin

# what a loss may take at each iteration: the HR output (n, t, c, H, W), the sharp HR frames, the
# blurry and sharp LR frames (n, t, c, h, w), the deblurred LR frames, the POF's flows (dict per scale)
LOSS_INPUTS = ('output', 'gt', 'lq', 'lq_sharp', 'deblurred', 'flows')
OPTIMIZERS = ('Adam', 'AdamW', 'Adamax', 'SGD', 'ASGD', 'RMSprop', 'Rprop')
SHORTHANDS = {'sr_opt': 'l_sr', 'db_opt': 'l_db', 'flow_opt': 'l_flow'}


@MODEL_REGISTRY.register()
class HOFFRModel(RunSafetyMixin, SRModel):
    """Training and validation of HOFFR (see the module docstring for the options it adds)."""

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
        # SRModel's version insists on its pixel/perceptual losses, so its EMA set-up is repeated here
        self.net_g.train()
        train_opt = self.opt['train']
        logger = get_root_logger()
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            logger.info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            load_path = self.opt['path'].get('pretrain_network_g')
            if load_path is not None:
                self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
            else:
                self.model_ema(0)
            self.net_g_ema.eval()
        self.losses = self.build_losses(train_opt)
        needs_sharp = sorted({name for name, inputs, _ in self.losses if 'lq_sharp' in inputs})
        if needs_sharp and not self.opt['datasets'].get('train', {}).get('dataroot_lq_sharp'):
            raise KeyError(f'train losses {", ".join(needs_sharp)} need the sharp LR frames: set '
                           'datasets.train.dataroot_lq_sharp')
        self.use_bf16 = bool(train_opt.get('bf16')) and self.device.type in ('cuda', 'cpu')
        self.log_batch_keys = bool(train_opt.get('log_batch_keys'))
        self.setup_optimizers()
        self.setup_schedulers()

    def build_losses(self, train_opt):
        """[(log name, input names, loss module)] from ``train.losses`` and the shorthands."""
        specs = [dict(spec) for spec in train_opt.get('losses') or []]
        specs += [dict(train_opt[key], name=name) for key, name in SHORTHANDS.items() if train_opt.get(key)]
        if not specs:
            raise KeyError('train.losses is required (e.g. [{type: SRLoss, loss_weight: 1.0}], or train.sr_opt)')
        losses = []
        for spec in specs:
            name = spec.pop('name', None) or 'l_' + spec['type'].lower().replace('loss', '')
            inputs = spec.pop('inputs', None)
            loss = build_loss(spec).to(self.device)
            inputs = tuple(inputs or getattr(loss, 'inputs', ('output', 'gt')))
            unknown = [k for k in inputs if k not in LOSS_INPUTS]
            if unknown:
                raise KeyError(f'train loss {name}: unknown inputs {unknown} (known: {", ".join(LOSS_INPUTS)})')
            if any(n == name for n, _, _ in losses):
                raise KeyError(f'train losses: two terms named {name}; give one a name: key')
            losses.append((name, inputs, loss))
        return losses

    def setup_optimizers(self):
        """BasicSR's optimisers over the network; the POF's learning rate times ``train.flow_lr_mul``.

        ``flow_lr_mul: 0`` freezes the POF (no gradient is computed for it at all, which also saves
        its backward pass): the pretrained flow is kept exactly.
        """
        train_opt = self.opt['train']
        flow_lr_mul = train_opt.get('flow_lr_mul', 1)
        optim_opt = deepcopy(train_opt['optim_g'])
        optim_type = optim_opt.pop('type')
        pof_ids = {id(p) for p in self.get_bare_model(self.net_g).pof.parameters()}
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        if flow_lr_mul in (0, 1):
            groups = params
        else:
            get_root_logger().info(f'POF learning rate x {flow_lr_mul}')
            groups = [{'params': [p for p in params if id(p) not in pof_ids], 'lr': optim_opt['lr']},
                      {'params': [p for p in params if id(p) in pof_ids], 'lr': optim_opt['lr'] * flow_lr_mul}]
        self.optimizer_g = self.get_optimizer(optim_type, groups, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        """The optimisers later BasicSR releases support (1.4.2's ``BaseModel`` knows only Adam)."""
        if optim_type not in OPTIMIZERS:
            raise NotImplementedError(f'train.optim_g.type {optim_type!r}: use one of {", ".join(OPTIMIZERS)}')
        return getattr(torch.optim, optim_type)(params, lr, **kwargs)

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        self.lq_sharp = data['lq_sharp'].to(self.device) if 'lq_sharp' in data else None
        self.batch_keys = data.get('key')

    def _autocast(self, enabled):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if enabled else nullcontext()

    def optimize_parameters(self, current_iter):
        if self.log_batch_keys:
            get_root_logger().info(f'iter {current_iter} batch keys: {" ".join(self.batch_keys)}')
        self.optimizer_g.zero_grad(set_to_none=True)
        with self._autocast(self.use_bf16):
            self.output, aux = self.net_g(self.lq, return_aux=True)
            given = {'output': self.output.float(), 'gt': self.gt, 'lq': self.lq, 'lq_sharp': self.lq_sharp,
                     'deblurred': aux['deblurred'].float(),
                     'flows': {k: v.float() for k, v in aux['flows'].items()}}
            losses = OrderedDict((name, loss(*(given[k] for k in inputs))) for name, inputs, loss in self.losses)
        total = sum(losses.values())
        self.check_finite_loss(total, losses, current_iter)
        total.backward()
        self.optimizer_g.step()
        losses['l_total'] = total
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad(), self._autocast(bool(self.opt['val'].get('bf16')) and self.device.type in ('cuda', 'cpu')):
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

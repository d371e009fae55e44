"""Small LaMa models with random weights, written in every published layout: for tests, benchmarks and users'
own tests. Each writer produces the exact structure of the real release files (see lama/checkpoint.py), so
the loaders are exercised on what users download, without the download.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from .discriminator import NLayerDiscriminator
from .generator import generator_from_config

SMALL_GENERATOR = {
    "kind": "ffc_resnet", "input_nc": 4, "output_nc": 3, "ngf": 8, "n_downsampling": 3, "n_blocks": 2,
    "add_out_act": "sigmoid",
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}


def randomize_bn(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics, so that eval-mode numerics are exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return module


CONFIG_TEMPLATE = """\
run_title: random_weights_for_tests
training_model:
  kind: default
  concat_mask: true
location:
  out_root_dir: /home/${{env:USER}}/experiments
data:
  batch_size: 10
  train:
    dataloader_kwargs:
      batch_size: ${{data.batch_size}}
generator:
  kind: ffc_resnet
  input_nc: 4
  output_nc: 3
  ngf: {ngf}
  n_downsampling: 3
  n_blocks: {n_blocks}
  add_out_act: sigmoid
  init_conv_kwargs:
    ratio_gin: 0
    ratio_gout: 0
    enable_lfu: false
  downsample_conv_kwargs:
    ratio_gin: ${{generator.init_conv_kwargs.ratio_gout}}
    ratio_gout: ${{generator.downsample_conv_kwargs.ratio_gin}}
    enable_lfu: false
  resnet_conv_kwargs:
    ratio_gin: 0.75
    ratio_gout: ${{generator.resnet_conv_kwargs.ratio_gin}}
    enable_lfu: false
discriminator:
  kind: pix2pixhd_nlayer
  input_nc: 3
  ndf: 64
  n_layers: 4
"""


def config_text(ngf: int, n_blocks: int) -> str:
    return CONFIG_TEMPLATE.format(ngf=ngf, n_blocks=n_blocks)


def lightning_checkpoint(gen: nn.Module, cfg_text: str) -> dict:
    """The dict a PyTorch Lightning 1.x ``best.ckpt`` holds, DictConfig hyper-parameters included."""
    from omegaconf import OmegaConf

    disc = NLayerDiscriminator(input_nc=3, ndf=4, n_layers=4)
    state = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    state.update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    state["loss_resnet_pl.impl.encoder.conv1.weight"] = torch.randn(8, 3, 3, 3)
    return {
        "epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.2.9",
        "state_dict": state,
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5), "best_model_path": "/x.ckpt"}},
        "optimizer_states": [], "lr_schedulers": [], "hparams_name": "config",
        "hyper_parameters": OmegaConf.create(cfg_text),
    }


def write_folder(root: Path, gen: nn.Module, cfg_text: str) -> Path:
    """big-lama.zip's unpacked layout: ``config.yaml`` + ``models/best.ckpt``."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(cfg_text)
    torch.save(lightning_checkpoint(gen, cfg_text), root / "models" / "best.ckpt")
    return root


def write_release_zip(path: Path, folder: Path) -> Path:
    """big-lama.zip: ``big-lama/config.yaml`` and ``big-lama/models/best.ckpt``."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(folder / "config.yaml", "big-lama/config.yaml")
        zf.write(folder / "models" / "best.ckpt", "big-lama/models/best.ckpt")
    return path


class _TrainingModule(nn.Module):
    def __init__(self, gen: nn.Module):
        super().__init__()
        self.generator = gen
        self.discriminator = NLayerDiscriminator(input_nc=3, ndf=4, n_layers=4)


class _JITWrapper(nn.Module):
    """Mirrors the official bin/to_jit.py wrapper that IOPaint's big-lama.pt was traced from."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.model = _TrainingModule(gen)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pred = self.model.generator(torch.cat([image * (1 - mask), mask], dim=1))
        return mask * pred + (1 - mask) * image


def write_torchscript(path: Path, gen: nn.Module) -> Path:
    wrapper = _JITWrapper(gen).eval()
    image, mask = torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (image, mask), check_trace=False)
    traced.save(str(path))
    return path


def write_safetensors(path: Path, gen: nn.Module, config: dict | None) -> Path:
    from safetensors.torch import save_file

    meta = {"lama_config": json.dumps(config)} if config else None
    save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(path), metadata=meta)
    return path


def small_model(folder: Path) -> Path:
    torch.manual_seed(0)
    return write_folder(folder, randomize_bn(generator_from_config(SMALL_GENERATOR)),
                        config_text(SMALL_GENERATOR["ngf"], SMALL_GENERATOR["n_blocks"]))


def write_resnet_pl_weights(torch_home: Path, seed: int = 0) -> Path:
    """Random ADE20k encoder weights at ``torch_home/ENCODER_FILE``, in the published key layout (a plain
    ``torch.save``'d state_dict, as the real ``encoder_epoch_20.pth``), so ResNetPL can be built without the
    94 MB download. The features are meaningless; the numerics are not trivial (non-unit BatchNorm statistics)."""
    from .training.resnet_pl import ENCODER_FILE, ResNet50Dilated

    g = torch.Generator().manual_seed(seed)
    state = {}
    with torch.device("meta"):  # only the names and shapes are needed
        template = ResNet50Dilated().state_dict()
    for name, t in template.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros((), dtype=torch.long)
        elif t.dim() == 4:
            state[name] = torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5
        elif name.endswith("running_var"):
            state[name] = 1 + 0.2 * torch.rand(t.shape, generator=g)
        elif name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(t.shape, generator=g)
        else:  # BatchNorm bias and running_mean
            state[name] = 0.05 * torch.randn(t.shape, generator=g)
    path = Path(torch_home) / ENCODER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path

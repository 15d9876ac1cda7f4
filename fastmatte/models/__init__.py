"""The model zoo: every model loads its authors' released checkpoints (registry.py, weights.py),
each in its own module or package, over shared backbones (backbones/)."""
from fastmatte.models import cra, e2ehim, modnet, ppmatting, ppmattingv2, rvm
from fastmatte.models.backbones import load_backbone_weights
from fastmatte.models.cra import CRAMatting
from fastmatte.models.e2ehim import E2EHIM
from fastmatte.models.registry import (MODELS, Conversion, ModelEntry, build_model, default_weights,
                                       load_model, read_weights)
from fastmatte.models.modnet import MODNet
from fastmatte.models.ppmatting import PPMatting
from fastmatte.models.ppmattingv2 import PPMattingV2
from fastmatte.models.rvm import RVM
from fastmatte.models.weights import WeightsError, load_weights, read_state_dict

MODELS["cra"] = ModelEntry(
    build=CRAMatting, convert_official=cra.convert_official, check_own_file=cra.check_not_previous,
    summary="CRA (Zhong & Zharkov, WACV 2024), the authors' model: Swin-T over 16x16 patches, every "
            "unknown 1/8 cell refined with cross-region attention",
    configurations={"official": {}, "tiny": cra.TINY},
    formats=("the authors' Trainer checkpoints (.pth: mat_model, discriminator, global_step)", "safetensors"))
MODELS["e2ehim"] = ModelEntry(
    build=E2EHIM, convert_official=e2ehim.convert_official,
    summary="E2E-HIM (Liu et al., aipixel): end-to-end human instance matting, Swin-T, 20 instance queries "
            "generating per-instance kernels; alpha, trimap and presence per query",
    configurations={"swintiny": {}},
    formats=("aipixel/E2E-HIM's swintiny.ckpt (flat state dict)", "safetensors"))
MODELS["modnet"] = ModelEntry(
    build=MODNet, convert_official=modnet.convert_official,
    summary="MODNet (Ke et al., AAAI 2022): trimap-free portrait matting, MobileNetV2, three branches",
    configurations={"zhkkke": {"variant": "zhkkke"}, "paddleseg": {"variant": "paddleseg"}},
    formats=("ZHKKKe/MODNet's .ckpt (DataParallel state dict)", "PaddleSeg's modnet-mobilenetv2.pdparams",
             "safetensors"))
MODELS["ppmatting"] = ModelEntry(
    build=PPMatting, convert_official=ppmatting.convert_official,
    summary="PP-Matting (Chen et al., 2022): trimap-free, HRNet, semantic context and gated detail branches",
    configurations={"hrnet_w18": {"backbone": "hrnet_w18"}, "hrnet_w48": {"backbone": "hrnet_w48"}},
    formats=("PaddleSeg's ppmatting-hrnet_w18-human_512/-human_1024 and hrnet_w48-distinctions .pdparams "
             "(human_1024: max_short=1024; distinctions: max_short=1536)", "safetensors"))
MODELS["ppmattingv2"] = ModelEntry(
    build=PPMattingV2, convert_official=ppmattingv2.convert_official,
    summary="PP-MattingV2 (PaddleSeg): real-time trimap-free human matting, STDC1, double pyramid pool, MLFF",
    configurations={"stdc1": {}},
    formats=("PaddleSeg's ppmattingv2-stdc1-human_512.pdparams", "safetensors"))
MODELS["rvm"] = ModelEntry(
    build=RVM, convert_official=rvm.convert_official,
    summary="RVM (Lin et al., WACV 2022): recurrent video matting, MobileNetV3-Large, deep guided filter",
    configurations={"mobilenetv3": {}},
    formats=("RVM's ONNX release rvm_mobilenetv3_fp32.onnx (`fastmatte weights get rvm` fetches and "
             "converts it)", "safetensors", "PyTorch state dict of fastmatte's RVM"),
    default_weights=rvm.default_weights)

__all__ = ["CRAMatting", "Conversion", "E2EHIM", "MODELS", "MODNet", "ModelEntry", "PPMatting", "PPMattingV2",
           "RVM", "WeightsError", "build_model", "default_weights", "load_backbone_weights", "load_model",
           "load_weights", "read_state_dict", "read_weights"]

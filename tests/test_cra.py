"""CRAMatting against the authors' CRA: the oracle in tests/data/cra_official (copied from
../shared/oracles/cra) rebuilds an official Trainer checkpoint and holds the official outputs on
a 256x384 crop of skimage's astronaut. Case A is the official inference (755 unknown cells, many
tied at the 8th/9th neighbour: the refined cells are checked with the official neighbour lists);
case B forces 189 cells with no ties, whose offsets reach past the bias table's range."""
import sys
from pathlib import Path

import pytest
import torch

from fastmatte.models import load_model
from fastmatte.models.cra.roi_head import official_neighbours
from fastmatte.ops import gather_tiles

sys.path.insert(0, str(Path(__file__).parent))
from oracle_weights import expected_tensors, load_manifest, write_checkpoint  # noqa: E402

ORACLE = Path(__file__).parent / "data" / "cra_official"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    return write_checkpoint(load_manifest(ORACLE), tmp_path_factory.mktemp("cra") / "0000100000.pth")


@pytest.fixture(scope="module")
def official(official_file):
    return load_model("cra", weights=official_file).eval()


@pytest.fixture(scope="module")
def expected():
    return expected_tensors(ORACLE)


def close(got, want):
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("backend", [None, "torch"])
def test_case_a_low_resolution_outputs_and_selection(official, expected, backend):
    with torch.no_grad():
        out = official(expected["image"], aux=True, backend=backend)
    for i in range(3):
        close(out["seg_logits"][i], expected[f"lowres_seg_logits_{i}"])
        close(out["trimap_logits"][i], expected[f"lowres_trimap_logits_{i}"])
    close(out["seg"], expected["lowres_seg"])
    close(out["trimap"], expected["lowres_trimap"])
    selection = out["selection"]
    assert torch.equal((selection.tile_map >= 0).float()[:, None], expected["sampling_mask"])
    assert int(selection.count) == expected["roi_matte"].shape[0] == 755
    # Rows in the official nonzero order (b, row, col), row-major.
    rows = selection.tiles[:755].long()
    assert torch.equal(rows, torch.nonzero(expected["sampling_mask"][:, 0] > 0))


def test_case_a_refined_cells_with_the_official_neighbour_lists(official, expected):
    """Where cells tie at the 8th neighbour, any choice is right (torch.topk's order is not
    defined); with the neighbours the official run used, the region head gives its cells."""
    with torch.no_grad():
        out = official(expected["image"], aux=True)
        tiles, count = out["selection"].tiles[:755], out["selection"].count
        rois = gather_tiles(expected["image"], out["seg"], tiles, count, 8)
        nbr = expected["debug_nearest_idx"].int()
        features = official.roi_head(rois, tiles, nbr, official.rel_pos_bias_table)
        refined = official.roi_matte_head(features).clamp(0, 1)
    close(refined, expected["roi_matte"])


@pytest.mark.parametrize("backend", [None, "torch"])
def test_case_b_given_trimap_refined_cells_and_alpha(official, expected, backend):
    with torch.no_grad():
        out = official(expected["image"], trimap=expected["B_overwrite_lowres_trimap"], aux=True,
                       backend=backend)
    assert torch.equal((out["selection"].tile_map >= 0).float()[:, None], expected["B_sampling_mask"])
    close(out["refined"], expected["B_roi_matte"])
    close(out["alpha"], expected["B_highres_matte"])


def test_case_b_neighbours_are_the_official_sets(official, expected):
    from fastmatte.ops import knn_tiles, select_tiles

    selection = select_tiles(expected["B_overwrite_lowres_trimap"], 48 * 32)
    tiles = selection.tiles[:int(selection.count)]
    nbr = official_neighbours(knn_tiles(tiles, selection.count, 8, selection.tile_map))
    assert torch.equal(nbr.sort(1).values, expected["B_debug_nearest_idx"].sort(1).values)


def test_the_official_file_loads_through_the_command_line(official_file, expected, tmp_path):
    import numpy as np
    from PIL import Image

    from fastmatte.cli import main

    photo = (expected["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    assert main(["matte", str(tmp_path / "astronaut.png"), "--model", "cra", "--weights", str(official_file),
                 "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written and all("astronaut" in name for name in written)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_case_b_on_cuda(official_file, expected):
    model = load_model("cra", weights=official_file, tile_capacity=256).eval().cuda()
    with torch.no_grad():
        out = model(expected["image"].cuda(), trimap=expected["B_overwrite_lowres_trimap"].cuda(), aux=True)
    # cuDNN may run the convolutions in TF32: a looser bound than on the CPU
    assert (out["alpha"].cpu() - expected["B_highres_matte"]).abs().max().item() <= 5e-3
    assert (out["refined"][:189].cpu() - expected["B_roi_matte"]).abs().max().item() <= 5e-3

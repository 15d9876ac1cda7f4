"""PP-Matting's and PP-MattingV2's workloads: the per-image photo workload
(fastmatte.bench.workloads.photo) with PaddleSeg's recipe sizes: LimitShort(max_short, the
model's: 512 for the human_512 releases) and ResizeToIntMult(32), so HD and 4K photos run the
network at 512 x 896."""
from fastmatte.bench.workloads.photo import PhotoWorkload
from fastmatte.models import paddleseg_transforms as transforms


class PaddleSegWorkload(PhotoWorkload):
    """A PaddleSeg release's predict on a fixed photo: network size by its LimitShort and
    ResizeToIntMult."""

    def network_size(self, model, height, width) -> tuple[int, int]:
        return transforms.int_multiple(*transforms.limit_short(height, width, model.max_short), self.title)


class PPMattingWorkload(PaddleSegWorkload):
    name = "ppmatting"
    title = "PP-Matting"


class PPMattingV2Workload(PaddleSegWorkload):
    name = "ppmattingv2"
    title = "PP-MattingV2"

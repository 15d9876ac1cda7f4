"""CUDA-graph capture of a whole forward pass: one launch per frame instead of hundreds."""
import torch


def capture_graph(run):
    """Capture `run()` (a callable reading static input tensors) in a torch.cuda.CUDAGraph.

    It is first run once on a side stream, as capture requires, so that the allocator, library
    handles and compiled kernels are ready; then captured on the current device. Returns
    (graph, output): graph.replay() recomputes `output` in place from the static inputs' current
    values (the next replay overwrites it: copy what must outlive it). Raises what the capture
    raises (e.g. an operation that synchronizes with the host).
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = run()
    return graph, output

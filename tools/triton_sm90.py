"""pytest plugin: compile every Triton kernel launch for sm_90 (H100/H200) on a machine without a GPU.

    PYTHONPATH=tools python -m pytest -p triton_sm90 -m triton tests      (make triton-check)

The interpreter (TRITON_INTERPRET=1) that runs the Triton tests on the CPU accepts programs the
real compiler rejects, and it runs the interpreter's block sizes and warp counts, not the GPU's.
This plugin imports fastmatte.kernels twice: once compiled (as on a GPU: the launchers pick their
GPU block sizes, warp counts and autotune configs) and once interpreted. Each launch the tests make
through the compiled copy is compiled with Triton's own argument binding and specialization for
sm_90, through ptxas, for every autotune config; the tests then run the same launch (GPU block
sizes, the first autotune config) in the interpreted copy, so they still check the results. At
the end it prints, per kernel, the specializations compiled, registers, shared memory and spills,
and the session fails on a compile error or a kernel over the sm_90 limits. What this cannot see:
anything that happens only on the device (races, timing, numerics of the real instructions).
"""
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

assert os.environ.get("TRITON_INTERPRET") != "1", "run without TRITON_INTERPRET: the plugin sets it itself"

import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402
from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
BACKEND = make_backend(TARGET)
SHARED_LIMIT = 227 * 1024  # bytes of shared memory one block may have on sm_90
REGISTER_FILE = 65536  # 32-bit registers per SM, shared by one block's threads at least
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"

_twins = {}  # id(compiled JITFunction) -> its interpreted twin
_kernels = set()  # "module.name" of every launchable kernel
_binders = {}
_compiled = {}  # specialization key -> result dict
_original_jit_run, _original_tuned_run = JITFunction.run, Autotuner.run
_ABSENT = object()


def _load_both_copies():
    """Every module of fastmatte.kernels compiled (left in sys.modules for the ops) and
    interpreted (kept aside), and each compiled kernel's interpreted twin."""
    import fastmatte.kernels

    names = [info.name for info in pkgutil.iter_modules(fastmatte.kernels.__path__)]
    compiled = {name: importlib.import_module(f"fastmatte.kernels.{name}") for name in names}
    os.environ["TRITON_INTERPRET"] = "1"
    for name in names:
        del sys.modules[f"fastmatte.kernels.{name}"]
    interpreted = {name: importlib.import_module(f"fastmatte.kernels.{name}") for name in names}
    for name, module in compiled.items():
        sys.modules[f"fastmatte.kernels.{name}"] = module
        setattr(sys.modules["fastmatte.kernels"], name, module)
        for attr, obj in vars(module).items():
            twin = getattr(interpreted[name], attr, None)
            if isinstance(obj, Autotuner):
                obj, twin = obj.fn, twin.fn
            if isinstance(obj, JITFunction):
                _twins[id(obj)] = twin
                if attr.endswith("_kernel"):  # launched, not a device function
                    _kernels.add(f"{name}.{attr}")
    from fastmatte.ops import _backend

    _backend.TRITON_INTERPRETER = True  # the ops may now launch Triton on CPU tensors


def _resources(kernel) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        text = subprocess.run([str(CUOBJDUMP), "-res-usage", f.name], capture_output=True, text=True).stdout
    line = next((ln for ln in text.splitlines() if "REG:" in ln), "")
    fields = dict(item.split(":", 1) for item in line.split() if ":" in item)
    return {"registers": int(fields.get("REG", 0)), "local_bytes": int(fields.get("LOCAL", 0)),
            "shared_bytes": kernel.metadata.shared}


def _compile(fn, args, kwargs):
    """Compile this launch of fn for sm_90 as JITFunction.run would bind and specialize it."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    binder = _binders.setdefault(id(fn), create_function_from_signature(fn.signature, fn.params, BACKEND))
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(BACKEND, kwargs, bound, specialization, options)
    key = (fn.__name__, repr(signature), repr(constexprs), repr(attrs),
           repr(sorted(options.__dict__.items())))
    if key in _compiled:
        return
    module = fn.fn.__module__.rsplit(".", 1)[-1]
    result = {"kernel": f"{module}.{fn.__name__}", "num_warps": options.num_warps,
              "constexprs": {str(k): v for k, v in constexprs.items()}, "error": None}
    try:
        result.update(_resources(triton.compile(ASTSource(fn, signature, constexprs, attrs), target=TARGET,
                                                options=options.__dict__)))
    except Exception as error:  # noqa: BLE001 - every compiler failure is a finding
        cause = f"\n{type(error.__cause__).__name__}: {error.__cause__}" if error.__cause__ else ""
        result["error"] = f"{type(error).__name__}: {error}{cause}".strip()
    _compiled[key] = result


def _language():
    """triton.language as the interpreter meets it: (its modules and classes, which the
    interpreter patches while it runs; (module, name, interpreted function) for each of its own
    jit functions (tl.cdiv, tl.max, ...), which were decorated at triton's import, before
    TRITON_INTERPRET was set, so are compiled-only, and the interpreted kernels need them
    interpreted)."""
    modules = [m for name, m in sys.modules.items() if name.startswith("triton.language") and m is not None]
    classes = {id(c): c for m in modules for c in vars(m).values()
               if isinstance(c, type) and c.__module__.startswith("triton.language")}
    stdlib = [(m, name, InterpretedFunction(obj.fn)) for m in modules for name, obj in list(vars(m).items())
              if isinstance(obj, JITFunction)]
    return modules + list(classes.values()), stdlib


def _interpret(fn, args, kwargs):
    """Run the interpreted twin, then put triton.language back as the compiler needs it: the
    interpreter patches its functions and classes for each device-function call and does not
    undo that. Names it adds to a module's globals stay (its cached rewritten functions use
    them; the compiler never looks them up)."""
    twin = _twins[id(fn)]
    names = set(twin.arg_names)
    saved = [(space, dict(vars(space))) for space in _LANGUAGE_SPACES]
    try:
        for m, name, interpreted in _STDLIB:
            setattr(m, name, interpreted)
        return twin.run(*args, grid=kwargs["grid"], warmup=False,
                        **{k: v for k, v in kwargs.items() if k in names})
    finally:
        for space, before in saved:
            now = vars(space)
            for name in [n for n in now if n not in before and isinstance(space, type)]:
                delattr(space, name)
            for name, value in before.items():
                if now.get(name, _ABSENT) is not value:
                    setattr(space, name, value)


def _jit_run(self, *args, **kwargs):
    if id(self) not in _twins:  # not one of ours
        return _original_jit_run(self, *args, **kwargs)
    _compile(self, args, kwargs)
    return _interpret(self, args, kwargs)


def _tuned_run(self, *args, **kwargs):
    if id(self.fn) not in _twins:
        return _original_tuned_run(self, *args, **kwargs)
    for config in self.configs:
        _compile(self.fn, args, {**kwargs, **config.all_kwargs()})
    return _interpret(self.fn, args, {**kwargs, **self.configs[0].all_kwargs()})


def problems(result) -> list[str]:
    if result["error"]:
        lines = [line for line in result["error"].splitlines() if line.strip()]
        return [" | ".join(lines[:1] + lines[-4:])[:600]]  # where, and the message at the end
    found = []
    if result["shared_bytes"] > SHARED_LIMIT:
        found.append(f"{result['shared_bytes']} B of shared memory > {SHARED_LIMIT}")
    if result["registers"] * result["num_warps"] * 32 > REGISTER_FILE:
        threads = result["num_warps"] * 32
        found.append(f"{result['registers']} registers x {threads} threads > {REGISTER_FILE}")
    return found


# At import, which `-p triton_sm90` makes happen before tests/conftest.py sets TRITON_INTERPRET.
if shutil.which(str(CUOBJDUMP)) is None:
    raise RuntimeError(f"triton_sm90: {CUOBJDUMP} is missing (triton's NVIDIA backend tools)")
_LANGUAGE_SPACES, _STDLIB = _language()
_load_both_copies()
JITFunction.run, Autotuner.run = _jit_run, _tuned_run


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    by_kernel = {}
    for result in _compiled.values():
        by_kernel.setdefault(result["kernel"], []).append(result)
    terminalreporter.section(f"Triton kernels compiled for sm_90 (triton {triton.__version__})")
    write(f"{'kernel':44s} {'variants':>8s} {'max regs':>8s} {'max smem B':>10s} {'spill B':>8s}  problems")
    for name, results in sorted(by_kernel.items()):
        ok = [r for r in results if not r["error"]]
        found = [p for r in results for p in problems(r)]
        spill = max((r["local_bytes"] for r in ok), default=0)
        write(f"{name:44s} {len(results):8d} {max((r['registers'] for r in ok), default=0):8d} "
              f"{max((r['shared_bytes'] for r in ok), default=0):10d} {spill:8d}  {len(found)}")
        for problem in sorted(set(found)):
            write(f"    {problem}")
    unlaunched = sorted(_kernels - set(by_kernel))
    if unlaunched:
        write(f"not launched by these tests, so not compiled: {', '.join(unlaunched)}")


def pytest_sessionfinish(session, exitstatus):
    if any(problems(r) for r in _compiled.values()) and session.exitstatus == 0:
        session.exitstatus = 1

"""The user's own models and weights: ``package.module:factory``, ``--weights``, ``--freeze-backbone``.

**Factories.** ``--model package.module:factory`` (or ``path/to/file.py:factory``) imports the
module — the current folder is searched first, then ``sys.path`` — and calls
``factory(num_classes=K, in_shape=(C, H, W), [width=, depth=, dropout=, batchnorm=])``, passing
each knob only when the factory's signature accepts it (or has ``**kwargs``), so complexity
sweeps over width/depth work on the user's model too. The result must be an ``nn.Module`` that
maps a (B, C, H, W) batch to (B, K) logits: a two-image probe checks this before training.

**Weights.** :func:`load_weights` reads a local state dict, a biasvar checkpoint (``best.pt``,
``last.pt`` or a run directory) or a ``{"state_dict": ...}`` wrapper, always with
``torch.load(weights_only=True)``: a file holding pickled code (any Python object beyond tensors
and plain containers) is refused, and nothing in it runs. Every layer whose name and shape
match is loaded. Layers that differ are named and left at their initial values — expected for
the classifier head when the class count changes. A first convolution that differs only in its
input channels is adapted (RGB → grey by summing the channels' filters, grey → RGB by
repeating them / 3, as timm does). Loading fails when less than :data:`MIN_LOADED_FRACTION`
of the model's parameters match.

**Freezing.** :func:`freeze_backbone` trains only the head: the module named ``head``, ``fc``
or ``classifier`` (else the last ``nn.Linear``). The backbone is a fixed feature extractor: its
weights get no gradient and its batch-norm layers keep their running statistics (they
normalise with them in training too).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import pickle
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, suggest

__all__ = ["resolve_factory", "load_weights", "freeze_backbone", "find_head", "WeightsWarning",
           "MIN_LOADED_FRACTION", "HEAD_NAMES"]

#: loading fails when the matching layers hold less than this fraction of the parameters
MIN_LOADED_FRACTION = 0.5
#: module names taken as the classification head, in this order
HEAD_NAMES = ("head", "fc", "classifier")
#: how many layer names an error or warning lists
_SHOW = 6


class WeightsWarning(UserWarning):
    """Some layers were not loaded, or which module is the head (said once per message)."""


_SAID: set[str] = set()


def _say(message: str) -> None:
    """Warn once per process and message: every fit job builds its model the same way."""
    if message not in _SAID:
        _SAID.add(message)
        warnings.warn(message, WeightsWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------
# package.module:factory

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    """While importing: the current folder first on ``sys.path`` (removed again afterwards),
    and no ``__pycache__`` written next to the user's files."""
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    no_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        yield
    finally:
        sys.dont_write_bytecode = no_bytecode
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)


def _where(e: BaseException) -> str:
    """`` (file.py, line N)`` of the innermost frame of ``e``'s traceback in the user's code
    (not in biasvar, torch or another installed package), or ``""``."""
    if isinstance(e, SyntaxError) and e.filename:
        return f" ({Path(e.filename).name}, line {e.lineno})"
    frames = traceback.extract_tb(e.__traceback__)
    here = str(Path(__file__).resolve().parents[1])
    own = [f for f in frames if "site-packages" not in f.filename and "dist-packages" not in
           f.filename and not f.filename.startswith(here) and not f.filename.startswith("<")]
    return f" ({Path(own[-1].filename).name}, line {own[-1].lineno})" if own else ""


def _import(module: str, name: str) -> Any:
    if module.endswith(".py") or "/" in module or os.sep in module:
        path = Path(os.path.expanduser(module))
        if not path.is_file():
            raise ModelError(f"model {name!r}: file {str(path)!r} does not exist.")
        mod_name = f"_biasvar_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ModelError(f"model {name!r}: {str(path)!r} cannot be imported as Python.")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        try:
            with _cwd_on_path():
                spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(mod_name, None)
            raise
        return mod
    if not _DOTTED.match(module):
        raise ModelError(f"model {name!r}: {module!r} is not a module name; write "
                         "package.module:factory (e.g. mymodels:build) or path/to/file.py:factory.")
    with _cwd_on_path():
        return importlib.import_module(module)


def resolve_factory(name: str) -> Callable[..., nn.Module]:
    """``"package.module:factory"`` → a callable building the model (see the module docstring).

    The callable has the factory's signature (so only the knobs it accepts are passed), turns any
    exception of the factory into a ModelError naming where it happened, and checks that the
    result is an ``nn.Module`` giving (B, K) logits for a (B, C, H, W) batch."""
    module, sep, attr = name.rpartition(":")
    if not sep or not module or not attr:
        raise ModelError(f"model {name!r}: write package.module:factory, e.g. mymodels:build.")
    try:
        mod = _import(module, name)
    except ModelError:
        raise
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name and (e.name == module or module.startswith(e.name + ".") or e.name == top):
            raise ModelError(
                f"model {name!r}: cannot import module {module!r} ({e}). It is looked for in the "
                f"current folder {os.getcwd()!r} and on the Python path: run from the folder "
                "holding it, add its folder to PYTHONPATH, or install the package.") from None
        raise ModelError(f"model {name!r}: importing {module!r} failed: {e}{_where(e)}; install "
                         "what it needs.") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any error in the user's module
        raise ModelError(f"model {name!r}: importing {module!r} failed with "
                         f"{type(e).__name__}: {e}{_where(e)}.") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = [k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")
                     and getattr(v, "__module__", None) == mod.__name__]
            raise ModelError(f"model {name!r}: module {module!r} has no attribute {attr!r}."
                             f"{suggest(attr, known)} Callables defined there: "
                             f"{', '.join(sorted(known)) or 'none'}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"model {name!r}: {attr!r} is a {type(obj).__name__}, not a function or "
                         "class that builds the model.")
    return _checked(obj, name)


def _checked(factory: Callable[..., Any], name: str) -> Callable[..., nn.Module]:
    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        try:
            model = factory(*args, **kwargs)
        except TypeError as e:  # create_model reports it with the arguments it passed
            raise TypeError(f"{e}{_where(e)}") from None
        except Exception as e:  # noqa: BLE001 - the user's code
            raise ModelError(f"model {name!r}: the factory raised {type(e).__name__}: "
                             f"{e}{_where(e)}.") from None
        if not isinstance(model, nn.Module):
            raise ModelError(f"model {name!r}: the factory returned {type(model).__name__}, "
                             "not a torch.nn.Module; return the model object (e.g. "
                             "nn.Sequential(...)).")
        in_shape, k = kwargs.get("in_shape"), kwargs.get("num_classes")
        if in_shape is not None and k is not None:
            _probe(model, tuple(in_shape), int(k), name)
        return model

    return build


@torch.no_grad()
def _probe(model: nn.Module, in_shape: tuple[int, ...], num_classes: int, name: str) -> None:
    """Run two images through ``model`` (eval mode, CPU state untouched): (2, K) logits?"""
    was_training = model.training
    model.eval()
    try:
        try:
            p = next(model.parameters())
            dev, dtype = p.device, p.dtype if p.is_floating_point() else torch.float32
        except StopIteration:
            dev, dtype = torch.device("cpu"), torch.float32
        out = model(torch.zeros((2, *in_shape), device=dev, dtype=dtype))
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"model {name!r}: a batch of shape (2, {', '.join(map(str, in_shape))}) "
                         f"fails in forward(): {type(e).__name__}: {msg}{_where(e)}. The factory "
                         "receives in_shape=(C, H, W); build the layers for it.") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {name!r}: forward() of a (2, {', '.join(map(str, in_shape))}) "
                         f"batch returns {got}; expected logits of shape (2, {num_classes}) "
                         "(num_classes is passed to the factory).")


# ------------------------------------------------------------------------------------------
# --weights


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what ``torch.load`` returned."""
    if isinstance(obj, dict) and obj.get("format") == "biasvar-checkpoint":
        obj = obj.get("model")
    elif isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict) and any(isinstance(v, torch.Tensor)
                                                     for v in obj[key].values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"weights: {str(path)!r} holds {type(obj).__name__}, not a state dict "
                         "(a mapping of layer names to tensors). Save weights with "
                         "torch.save(model.state_dict(), path).")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ModelError(f"weights: {str(path)!r} holds a mapping without tensors; save weights "
                         "with torch.save(model.state_dict(), path).")
    for prefix in ("module.", "_orig_mod."):  # DataParallel / torch.compile wrappers
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _read(path: str | os.PathLike) -> tuple[Path, dict[str, torch.Tensor]]:
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():  # a run directory
        p = next((p / f for f in ("best.pt", "last.pt") if (p / f).is_file()), p / "best.pt")
    if not p.is_file():
        raise ModelError(f"weights: file {str(p)!r} does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        # code-bearing pickles import a global (torch names it, or the raw pickle shows it);
        # random bytes do not
        if "Weights only load failed" in text and (re.search(r"GLOBAL", text)
                                                   or _pickle_imports(p)):
            m = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" (it references {m.group(1)})" if m else ""
            raise ModelError(
                f"weights: {str(p)!r} holds code, not just weights: pickled Python objects"
                f"{what} that would run when loaded. biasvar loads weights with "
                "weights_only=True and refused it; nothing from the file was run. If you trust "
                "the file, re-save only the tensors: torch.save(model.state_dict(), path).") from None
        raise ModelError(f"weights: {str(p)!r} is not a PyTorch weights file or is damaged "
                         f"({text.splitlines()[0][:120]}).") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, random bytes, ...
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ModelError(f"weights: {str(p)!r} is not a PyTorch weights file or is damaged "
                         f"({type(e).__name__}: {msg}). Expected a file written by "
                         "torch.save(model.state_dict(), path) or a biasvar checkpoint.") from None
    return p, _unwrap(obj, p)


def _pickle_imports(path: Path) -> bool:
    """True when ``path`` is a plain pickle that imports something (GLOBAL / STACK_GLOBAL / INST
    opcodes): code that would run when loaded. Read with pickletools, which runs nothing."""
    import pickletools

    try:
        data = path.read_bytes()
        return any(op.name in ("GLOBAL", "STACK_GLOBAL", "INST")
                   for op, _, _ in pickletools.genops(data))
    except Exception:  # noqa: BLE001 - not a pickle at all: damaged or random bytes
        return False


def _adapt_in_channels(src: torch.Tensor, want: torch.Size) -> torch.Tensor | None:
    """A conv weight (O, I, kh, kw) for ``want`` differing only in I: RGB → grey sums the
    filters over I; grey → RGB repeats them and divides by 3 (same response to grey input)."""
    if src.ndim != 4 or len(want) != 4 or src.shape[0] != want[0] or src.shape[2:] != want[2:]:
        return None
    i_src, i_want = src.shape[1], want[1]
    if i_src == 3 and i_want == 1:
        return src.sum(dim=1, keepdim=True)
    if i_src == 1 and i_want == 3:
        return src.repeat(1, 3, 1, 1) / 3.0
    return None


def _names(items: list[str]) -> str:
    return ", ".join(items[:_SHOW]) + (f", and {len(items) - _SHOW} more" if len(items) > _SHOW
                                       else "")


def load_weights(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load the matching layers of ``path`` into ``model`` (in place); returns notes.

    Raises ModelError for a missing or unreadable file, a file holding code, or when less than
    MIN_LOADED_FRACTION of the parameters match (naming the mismatched layers). Layers that
    are skipped are named in a :class:`WeightsWarning` and in the returned notes."""
    p, src = _read(path)
    own = model.state_dict()
    params = {n for n, _ in model.named_parameters()}
    total = sum(own[n].numel() for n in params if n in own) or 1
    load: dict[str, torch.Tensor] = {}
    wrong, adapted, absent = [], [], []
    for k, v in own.items():
        if k not in src:
            absent.append(k)
            continue
        s = src[k]
        if s.shape == v.shape:
            load[k] = s
        elif (a := _adapt_in_channels(s, v.shape)) is not None:
            load[k] = a
            adapted.append(f"{k} ({s.shape[1]} → {v.shape[1]} input channels)")
        else:
            wrong.append(f"{k} (file {tuple(s.shape)}, model {tuple(v.shape)})")
    unused = [k for k in src if k not in own]
    loaded = sum(own[k].numel() for k in load if k in params)
    if not load or loaded < MIN_LOADED_FRACTION * total:
        parts = []
        if wrong:
            parts.append(f"different shapes: {_names(wrong)}")
        if absent:
            parts.append(f"not in the file: {_names([a for a in absent if a in params] or absent)}")
        if unused:
            parts.append(f"in the file but not in the model: {_names(unused)}")
        raise ModelError(
            f"weights: {str(p)!r} does not fit this model: only {loaded:,} of {total:,} "
            f"parameters ({loaded / total:.0%}) have a layer of the same name and shape in the "
            f"file; at least {MIN_LOADED_FRACTION:.0%} must. {'; '.join(parts)}. Use the same "
            "--model, --width, --depth, --channels and --image-size as the weights were "
            "trained with.")
    model.load_state_dict(load, strict=False)
    notes = [f"weights: loaded {len(load)} of {len(own)} tensors from {str(p)!r} "
             f"({loaded / total:.0%} of the parameters)."]
    if adapted:
        notes.append(f"weights: adapted {_names(adapted)}.")
    skipped = wrong + [a for a in absent if a in params]
    if skipped:
        head = find_head(model)
        head_note = ""
        if head is not None:
            in_head = [s for s in skipped if s.split(" ")[0].startswith(head[0] + ".")]
            head_note = (" (the classifier head, as expected when the classes differ)"
                         if len(in_head) == len(skipped) else "")
        notes.append(f"weights: {len(skipped)} layers keep their initial values{head_note}: "
                     f"{_names(skipped)}.")
    for n in notes[1:]:
        _say(n)
    return notes


# ------------------------------------------------------------------------------------------
# --freeze-backbone


def find_head(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(name, module) of the classification head: a child named head/fc/classifier, else the
    last ``nn.Linear`` (by registration order), else None."""
    children = dict(model.named_children())
    for n in HEAD_NAMES:
        if n in children and any(True for _ in children[n].parameters()):
            return n, children[n]
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (n, m)
    return last


def _keep_running_stats(module: nn.Module, args: Any) -> None:
    """Forward pre-hook: a frozen batch-norm layer normalises with its stored statistics."""
    module.training = False


def freeze_backbone(model: nn.Module) -> list[str]:
    """Train only the head (see :func:`find_head`): every other parameter stops requiring a
    gradient and every other batch-norm layer keeps its running statistics. Returns notes."""
    head = find_head(model)
    if head is None:
        raise ModelError("freeze_backbone: the model has no module named "
                         f"{', '.join(HEAD_NAMES)} and no nn.Linear, so it has no head to train; "
                         "name the classifier layer 'head' or leave out --freeze-backbone.")
    name, module = head
    head_params = {id(p) for p in module.parameters()}
    head_modules = {id(m) for m in module.modules()}
    frozen = trainable = 0
    for p in model.parameters():
        if id(p) in head_params:
            p.requires_grad_(True)
            trainable += p.numel()
        else:
            p.requires_grad_(False)
            frozen += p.numel()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in head_modules:
            m.register_forward_pre_hook(_keep_running_stats)
    note = (f"freeze_backbone: training only the head {name!r} ({type(module).__name__}, "
            f"{trainable:,} parameters); {frozen:,} backbone parameters are frozen.")
    _say(note)
    return [note]

"""The ``device``, ``precision`` and ``channels_last`` keys every compute section shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator

from metagmvae.runtime.config import Section

if TYPE_CHECKING:
    from metagmvae.runtime.device import Runtime


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def _cuda_available() -> bool:
    import torch  # only when a section asks for cuda by name

    return torch.cuda.is_available()


def device_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as the ``device`` setting on this machine, or ``None``."""
    if name not in DEVICES:
        return f"must be one of {list(DEVICES)}"
    if name == "cuda" and not _cuda_available():
        return "no CUDA GPU is available on this machine (use 'auto' or 'cpu')"
    return None


def channels_last_problem(value) -> str | None:
    """Why ``value`` is not a ``channels_last`` setting, or ``None``."""
    return None if isinstance(value, bool) or value == "auto" else "must be auto, true or false"


def _usable_device(name: str) -> str:
    if problem := device_problem(name):
        raise ValueError(problem)
    return name


def _channels_last_setting(value: Any) -> bool | str:
    if problem := channels_last_problem(value):
        raise ValueError(problem)
    return value


class RuntimeSettings(Section):
    """The ``device``, ``precision`` and ``channels_last`` keys of every compute section.

    Sections whose configuration a checkpoint stores (``metatrain``, ``pretrain``) keep them
    last, as their checkpoints always have: ``class X(RuntimeSettings, XKeys)`` (pydantic puts
    the fields of the rightmost base first).
    """

    device: Annotated[Literal[DEVICES], AfterValidator(_usable_device)]  # auto | cpu | cuda
    precision: Literal[PRECISIONS]  # auto | fp32 | bf16 (resolved by make_runtime)
    channels_last: Annotated[Any, AfterValidator(_channels_last_setting)]  # auto | true | false

    def runtime(self, *, convolutional: bool) -> Runtime:
        """The resolved runtime of this section (see :func:`make_runtime`)."""
        from metagmvae.runtime.device import make_runtime  # torch: only where a stage computes

        return make_runtime(self.device, self.precision, self.channels_last, convolutional=convolutional)

    def as_run_with(self, rt: Runtime):
        """This section with ``precision`` and ``channels_last`` as ``rt`` resolved them (what a
        checkpoint and a resume fingerprint record: how the model was trained, not "auto")."""
        return self.model_copy(update={"precision": rt.precision, "channels_last": rt.channels_last})

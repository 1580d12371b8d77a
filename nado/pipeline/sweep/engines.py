"""Where the trials of a sweep run: Ray tasks, or one after another in this process.

:func:`pick_engine` returns ``(name, submit)``; ``submit(specs, threads)`` yields the
result dict of :func:`nado.pipeline.sweep.trial.run_trial` for each spec as it finishes.

Ray: a local instance (``ray.init(num_cpus=cpus, include_dashboard=False)``) or the
cluster at ``address``; each trial is ``ray.remote(num_cpus=threads, max_retries=0)``
(nado retries failed trials itself, on ``--retry-failed``). A trial whose worker
dies (killed, out of memory) comes back as a failed result naming the Ray error. A
Ray instance started here is shut down afterwards; one already initialised by the
caller is used and left running.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from ...errors import ConfigError

ENGINES = ("auto", "ray", "serial")


def _have_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def pick_engine(engine: str, *, address: str | None = None, cpus: int | None = None,
                log: Callable[[str], None] = print) -> tuple[str, Callable]:
    """``("ray", submit)`` or ``("serial", submit)``; see the module docstring."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "serial":
        if address:
            raise ConfigError("--address needs Ray; drop --serial")
        log("sweep: running trials one after another in this process (--serial)")
        return "serial", _serial
    if _have_ray():
        return "ray", lambda specs, threads: _ray(specs, threads, address=address, cpus=cpus, log=log)
    if engine == "ray" or address:
        raise ConfigError("Ray is not installed: pip install 'nado[ray]' (or run without --address)")
    log("sweep: Ray is not installed (pip install 'nado[ray]'): running trials one after another "
        "in this process")
    return "serial", _serial


def _serial(specs: list[dict[str, Any]], threads: int) -> Iterator[dict[str, Any]]:
    from .trial import run_trial
    for spec in specs:
        yield run_trial(spec)


def _ray(specs: list[dict[str, Any]], threads: int, *, address: str | None, cpus: int | None,
         log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    import ray
    from .trial import run_trial
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
            log(f"sweep: Ray cluster at {address}")
        else:
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            log(f"sweep: local Ray with {int(ray.cluster_resources().get('CPU', 0))} CPUs")
        started = True
    try:
        total = ray.cluster_resources().get("CPU", 0)
        if threads > total:
            raise ConfigError(f"--threads {threads} exceeds the {total:g} CPUs Ray has: no trial "
                              "could ever be scheduled; lower --threads or add CPUs")
        task = ray.remote(num_cpus=threads, max_retries=0)(run_trial)
        refs = {task.remote(spec): spec for spec in specs}
        log(f"sweep: {len(refs)} trials submitted to Ray, {threads} CPU thread(s) each")
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ref = ready[0]
            try:
                yield ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the worker died: record the trial as failed
                spec = refs[ref]
                yield {"name": spec["name"], "status": "failed", "seconds": 0.0,
                       "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                       "traceback": str(exc)[-2000:]}
    finally:
        if started:
            ray.shutdown()

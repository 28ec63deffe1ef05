"""What the page's worker does with one song: separate it, draw its stems, zip them.

Separation is ``separate.separate_file``, the command line's own streaming
path, so a stem downloaded from the page is bit-identical to what
``attnsep separate`` writes for the same song and settings (the browser test
checks it), and memory stays flat however long the song.
"""

from __future__ import annotations

import os
import threading
import zipfile

import soundfile as sf

from attnsep_jax import files, separate
from attnsep_jax.web import images
from attnsep_jax.web.jobs import Job


def process_song(job: Job, report, model, params, config,
                 outputs: separate.Outputs) -> None:
  """Separates a job's song and draws its stems; fills in ``seconds`` and ``stems``.

  Args:
    job: the job (its song is uploaded).
    report: ``report(stage, fraction)``, as ``jobs.JobQueue`` passes it.
    model, params, config: as ``export.load_model`` returns them.
    outputs: stems and file format; ``outputs.filename`` must be ``{stem}.{ext}``.
  """
  report("reading", None)   # checking and decoding the song: no fraction to show yet
  targets = separate.separate_file(
      job.song_path, job.stems_folder, model, params, config, outputs, force=True,
      progress=lambda fraction: report("separating", fraction))
  os.makedirs(os.path.dirname(job.image_path("any", "waveform")), exist_ok=True)
  for index, (name, path) in enumerate(targets.items()):
    report("drawing", index / len(targets))
    images.draw_stem(path, name, job.image_path(name, "waveform"),
                     job.image_path(name, "spectrogram"))
  job.seconds = sf.info(next(iter(targets.values()))).duration   # the players' duration
  job.stems = tuple(targets)


_zip_lock = threading.Lock()


def write_zip(job: Job, ext: str) -> str:
  """The job's stems as one zip (``<track>/<stem>.<ext>``, as the command line
  lays them out), written once, streamed file by file; returns its path."""
  with _zip_lock:   # two clicks on the link must not write it twice at once
    if not os.path.exists(job.zip_path):
      with files.staged_file(job.zip_path, f"the zip of {job.name}", suffix=".zip") as tmp:
        # Stored: audio does not deflate enough to be worth the time.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
          for stem in job.stems:
            archive.write(job.stem_path(stem, ext), f"{job.track}/{stem}.{ext}")
  return job.zip_path

"""The page's queue: songs separated one at a time, in order, by one worker thread.

Each job lives in its own folder under the work folder: the uploaded song,
the stems, their images, the zip once asked for, and ``job.json`` (its name,
state and results).  Finished and failed jobs stay listed until deleted,
across restarts of the server; jobs that were waiting or running when the
server stopped are queued again when it starts.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import shutil
import threading
import time
import uuid
from typing import Callable

from attnsep_jax import files
from attnsep_jax.audio import AudioError
from attnsep_jax.separate import SongError

JOB_FILE = "job.json"
STATES = ("queued", "running", "done", "failed")
# Failures whose message is the whole story; others also log their traceback.
EXPECTED_ERRORS = (SongError, AudioError, OSError)
log = logging.getLogger(__name__)


class Cancelled(Exception):
  """Raised inside a running job that was deleted or whose server is stopping."""


def song_path(folder: str, name: str) -> str:
  """Where the song named ``name`` of the job in ``folder`` is uploaded."""
  return os.path.join(folder, "song", name)


@dataclasses.dataclass
class Job:
  """One song and what became of it.

  Attributes:
    id: hex identifier, the name of its folder.
    name: the uploaded file's name.
    folder: the job's folder.
    created: when it was queued (seconds since the epoch).
    state: one of ``STATES``.
    stage: while running, what it does: "reading", "separating" or "drawing".
    progress: fraction of the stage done, in [0, 1] (None: not measurable).
    error: why it failed, one line.
    seconds: the song's duration, once separated.
    stems: the stem names written, once separated.
  """
  id: str
  name: str
  folder: str
  created: float
  state: str = "queued"
  stage: str = ""
  progress: float | None = 0.0
  error: str = ""
  seconds: float = 0.0
  stems: tuple[str, ...] = ()

  @property
  def track(self) -> str:
    return os.path.splitext(self.name)[0]

  @property
  def song_path(self) -> str:
    return song_path(self.folder, self.name)

  @property
  def stems_folder(self) -> str:
    return os.path.join(self.folder, "stems")

  def stem_path(self, stem: str, ext: str = "wav") -> str:
    return os.path.join(self.stems_folder, f"{stem}.{ext}")

  def image_path(self, stem: str, kind: str) -> str:
    return os.path.join(self.folder, "images", f"{stem}.{kind}.png")

  @property
  def zip_path(self) -> str:
    return os.path.join(self.folder, "stems.zip")

  def public(self) -> dict:
    """What the page is told."""
    return {key: getattr(self, key) for key in
            ("id", "name", "track", "created", "state", "stage", "progress", "error",
             "seconds", "stems")}

  def save(self) -> None:
    saved = {key: getattr(self, key) for key in
             ("id", "name", "created", "state", "error", "seconds", "stems")}
    files.write_json(os.path.join(self.folder, JOB_FILE), saved, f"the state of job {self.id}")


Process = Callable[[Job, Callable[[str, float | None], None]], None]


class JobQueue:
  """Jobs in a folder, and the worker thread that runs them in order.

  Args:
    work_dir: the folder of the jobs (created when missing).
    process: ``process(job, report)`` does a job's work, filling in its
      ``seconds`` and ``stems``; it calls ``report(stage, fraction)`` as it
      goes, which raises ``Cancelled`` when the job is to stop.  Any exception
      fails the job with its message.
  """

  def __init__(self, work_dir: str, process: Process):
    self.work_dir, self.process = os.path.abspath(work_dir), process
    os.makedirs(self.work_dir, exist_ok=True)
    self.lock = threading.Condition()
    self.jobs: dict[str, Job] = {}
    self.waiting: collections.deque[str] = collections.deque()
    self.running: Job | None = None
    self.cancelled = False   # the running job must stop
    self.stopping = False
    self.thread: threading.Thread | None = None
    for job in sorted(self._load(), key=lambda j: j.created):
      self.jobs[job.id] = job
      if job.state in ("queued", "running"):
        job.state = "queued"
        self.waiting.append(job.id)

  def _load(self) -> list[Job]:
    jobs = []
    for entry in os.scandir(self.work_dir):
      path = os.path.join(entry.path, JOB_FILE)
      if entry.is_dir() and os.path.isfile(path):
        try:
          with open(path) as f:
            saved = json.load(f)
          jobs.append(Job(folder=entry.path, **{**saved, "stems": tuple(saved["stems"])}))
        except (OSError, ValueError, TypeError, KeyError) as e:
          log.warning("skipping %s: %s", path, e)
    return jobs

  def new_folder(self) -> tuple[str, str]:
    """A fresh job id and its (created) folder, for an upload to fill."""
    job_id = uuid.uuid4().hex[:12]
    folder = os.path.join(self.work_dir, job_id)
    os.makedirs(folder)
    return job_id, folder

  def submit(self, job_id: str, name: str) -> Job:
    """Queues the song already uploaded to ``Job.song_path`` of ``job_id``."""
    job = Job(id=job_id, name=name, folder=os.path.join(self.work_dir, job_id),
              created=time.time())
    job.save()
    with self.lock:
      self.jobs[job.id] = job
      self.waiting.append(job.id)
      self.lock.notify_all()
    return job

  def list(self) -> list[dict]:
    with self.lock:
      return [job.public() for job in self.jobs.values()]

  def get(self, job_id: str) -> Job | None:
    with self.lock:
      return self.jobs.get(job_id)

  def delete(self, job_id: str) -> bool:
    """Forgets a job and removes its folder (a running job stops first)."""
    with self.lock:
      job = self.jobs.pop(job_id, None)
      if job is None:
        return False
      if job_id in self.waiting:
        self.waiting.remove(job_id)
      if self.running is job:
        self.cancelled = True   # the worker removes the folder once it has stopped
        return True
    shutil.rmtree(job.folder, ignore_errors=True)
    return True

  def start(self) -> None:
    self.thread = threading.Thread(target=self._work, name="attnsep-jobs", daemon=True)
    self.thread.start()

  def stop(self, timeout_seconds: float = 10.0) -> None:
    """Stops the worker; a running job stops too and is queued again at the next start."""
    with self.lock:
      self.stopping = self.cancelled = True
      self.lock.notify_all()
    if self.thread is not None:
      self.thread.join(timeout_seconds)

  def _report(self, job: Job, stage: str, progress: float | None) -> None:
    with self.lock:
      if self.cancelled:
        raise Cancelled()
      job.stage, job.progress = stage, progress

  def _next(self) -> Job | None:
    with self.lock:
      while not self.waiting and not self.stopping:
        self.lock.wait()
      if self.stopping:
        return None
      job = self.jobs[self.waiting.popleft()]
      job.state, job.stage, job.progress = "running", "reading", None
      self.running, self.cancelled = job, False
      return job

  def _work(self) -> None:
    while (job := self._next()) is not None:
      try:
        self.process(job, lambda stage, progress: self._report(job, stage, progress))
        self._finish(job, "done")
      except Cancelled:
        self._finish(job, "queued")
      except Exception as e:   # the page shows one line; the log keeps the traceback
        if not isinstance(e, EXPECTED_ERRORS):
          log.exception("job %s (%s) failed", job.id, job.name)
        self._finish(job, "failed", (str(e).strip().splitlines() or [type(e).__name__])[0])

  def _finish(self, job: Job, state: str, error: str = "") -> None:
    with self.lock:
      deleted = job.id not in self.jobs
      self.running = None
      job.state, job.error, job.stage = state, error, ""
    if deleted:
      shutil.rmtree(job.folder, ignore_errors=True)
      return
    try:
      job.save()
    except OSError as e:
      log.warning("%s", e)

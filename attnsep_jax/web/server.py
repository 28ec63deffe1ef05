"""A local web page to separate songs and listen to their stems: ``attnsep serve``.

    attnsep serve --checkpoint exports/small     # then open http://127.0.0.1:8000/

The page (``static/``) uploads songs, shows each one's progress, and plays
the stems in sync with solo and mute, beside their waveform and spectrogram.
Songs are separated one at a time by the queue of ``jobs`` through the
command line's own streaming path (``work``), so memory stays flat for long
songs and the stems are the files ``attnsep separate`` writes.

Routes (JSON unless said otherwise):
  GET    /                                 the page
  GET    /api/info                         stems, sample rate, upload limit
  GET    /api/jobs                         every job: state, progress, stems
  POST   /api/jobs?name=FILE               body: the song's bytes; queues it
  DELETE /api/jobs/ID                      deletes a job (stopping it if running)
  GET    /api/jobs/ID/stems/STEM           a stem file (with range requests)
  GET    /api/jobs/ID/images/STEM/KIND     its waveform or spectrogram (PNG)
  GET    /api/jobs/ID/zip                  every stem in one zip
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import socket
import sys

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from attnsep_jax import audio, cli, files, separate
from attnsep_jax.web import jobs as jobs_lib
from attnsep_jax.web import work

DEFAULT_PORT = 8000
DEFAULT_WORK_DIR = os.path.join("runs", "serve")
DEFAULT_MAX_UPLOAD_MB = 2048.0   # a 1-hour float wav is about 1.3 GB
IMAGE_KINDS = ("waveform", "spectrogram")
# The stems the page offers: the command line's defaults, one file per stem.
OUTPUTS = separate.Outputs(filename="{stem}.{ext}")


def create_app(checkpoint: str, work_dir: str = DEFAULT_WORK_DIR,
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               outputs: separate.Outputs = OUTPUTS) -> Starlette:
  """The page's application, with its model loaded and its jobs listed.

  Args:
    checkpoint: a training workdir or an export (as ``attnsep separate``'s).
    work_dir: the folder of uploaded songs and their stems (kept across runs).
    max_upload_mb: larger uploads are refused (HTTP 413), in MiB.
    outputs: stems and format written for each song.
  Raises:
    export.ModelLoadError: the checkpoint cannot be loaded.
  """
  from attnsep_jax.export import load_model
  config, model, params = load_model(checkpoint)
  process = functools.partial(work.process_song, model=model, params=params, config=config,
                              outputs=outputs)
  queue = jobs_lib.JobQueue(work_dir, process)
  max_upload_bytes = int(max_upload_mb * 2**20)

  @contextlib.asynccontextmanager
  async def lifespan(app):
    queue.start()
    yield
    queue.stop()

  static = StaticFiles(packages=[("attnsep_jax.web", "static")], html=True)
  app = Starlette(lifespan=lifespan, routes=[
      Route("/api/info", info),
      Route("/api/jobs", list_jobs),
      Route("/api/jobs", upload, methods=["POST"], max_body_size=max_upload_bytes),
      Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
      Route("/api/jobs/{job_id}/stems/{stem}", stem_file),
      Route("/api/jobs/{job_id}/images/{stem}/{kind}", image_file),
      Route("/api/jobs/{job_id}/zip", zip_file),
      Mount("/", static),
  ])
  app.state.jobs, app.state.outputs = queue, outputs
  app.state.info = {"checkpoint": os.path.basename(os.path.abspath(checkpoint)),
                    "stems": list(outputs.stems), "format": outputs.fmt,
                    "sample_rate": int(config.data.sample_rate),
                    "max_upload_mb": max_upload_mb,
                    "extensions": sorted(audio.AUDIO_EXTENSIONS)}
  return app


def _error(status: int, message: str) -> JSONResponse:
  return JSONResponse({"error": message}, status_code=status)


async def info(request: Request) -> JSONResponse:
  return JSONResponse(request.app.state.info)


async def list_jobs(request: Request) -> JSONResponse:
  return JSONResponse({"jobs": request.app.state.jobs.list()})


def safe_name(name: str) -> str:
  """The uploaded file's name, reduced to a harmless base name ("" if nothing is left)."""
  name = os.path.basename(name.replace("\\", "/")).strip()
  name = "".join(c for c in name if c.isprintable() and c not in '<>:"|?*').lstrip(".")
  root, ext = os.path.splitext(name)
  return root[:120] + ext[:12]


async def upload(request: Request) -> Response:
  """Saves the body as the song of a new job and queues it, or says why not."""
  queue = request.app.state.jobs
  name = safe_name(request.query_params.get("name", ""))
  if not name:
    return _error(400, "the upload has no file name")
  job_id, folder = queue.new_folder()
  queued = False
  try:
    path = jobs_lib.song_path(folder, name)
    os.makedirs(os.path.dirname(path))
    with files.staged_file(path, f"the upload {name}") as tmp:
      with open(tmp, "wb") as f:
        async for chunk in request.stream():   # Starlette enforces the size limit
          f.write(chunk)
    problem = await run_in_threadpool(_check_upload, path)
    if problem:
      return _error(400, f"{name}: {problem}")
    job = queue.submit(job_id, name)
    queued = True
    return JSONResponse(job.public(), status_code=201)
  except files.WriteError as e:   # a full disk, most likely
    return _error(507, str(e))
  except ClientDisconnect:   # the page was closed mid-upload: nobody to answer
    return Response(status_code=400)
  finally:
    if not queued:
      shutil.rmtree(folder, ignore_errors=True)


def _check_upload(path: str) -> str:
  """Why the uploaded file is not a song ("" when its header reads); the
  worker checks the samples themselves."""
  if os.path.getsize(path) == 0:
    return "the file is empty (0 bytes)"
  try:
    header = audio.info(path)
  except audio.AudioError as e:
    return str(e).removeprefix(f"{path}: ")
  empty = header.frames <= 0 and header.decoder == "soundfile"   # ffmpeg's is an estimate
  return "is empty (no samples)" if empty else ""


async def delete_job(request: Request) -> JSONResponse:
  if not request.app.state.jobs.delete(request.path_params["job_id"]):
    return _error(404, "no such job")
  return JSONResponse({"deleted": request.path_params["job_id"]})


def _done_job(request: Request) -> jobs_lib.Job | None:
  job = request.app.state.jobs.get(request.path_params["job_id"])
  return job if job is not None and job.state == "done" else None


async def stem_file(request: Request):
  job, stem = _done_job(request), request.path_params["stem"]
  if job is None or stem not in job.stems:
    return _error(404, "no such stem")
  ext = request.app.state.outputs.fmt
  return FileResponse(job.stem_path(stem, ext), filename=f"{job.track} - {stem}.{ext}",
                      content_disposition_type="inline")


async def image_file(request: Request):
  job, stem, kind = _done_job(request), request.path_params["stem"], request.path_params["kind"]
  if job is None or stem not in job.stems or kind not in IMAGE_KINDS:
    return _error(404, "no such image")
  return FileResponse(job.image_path(stem, kind), media_type="image/png")


async def zip_file(request: Request):
  job = _done_job(request)
  if job is None:
    return _error(404, "no such job, or it is not done")
  try:
    path = await run_in_threadpool(work.write_zip, job, request.app.state.outputs.fmt)
  except OSError as e:
    return _error(507, str(e))
  return FileResponse(path, filename=f"{job.track} - stems.zip", media_type="application/zip")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog=cli.prog("serve"),
      description="A local web page to separate songs and listen to the stems.")
  parser.add_argument("--checkpoint", required=True,
                      help="training workdir (attnsep train) or export (attnsep export)")
  parser.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only; "
                           "0.0.0.0 opens the page to the network, with no password)")
  parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                      help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
  parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                      metavar="MB", help="larger uploads are refused, in MiB "
                                         f"(default {DEFAULT_MAX_UPLOAD_MB:g})")
  parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                      help="folder of the uploaded songs and their stems, kept until "
                           f"deleted on the page (default {DEFAULT_WORK_DIR})")
  return parser


def _listen(host: str, port: int) -> socket.socket:
  family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
  return socket.create_server((host, port), family=family)


def main(argv=None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if args.max_upload_mb <= 0:
    parser.error("--max-upload-mb must be positive")
  from attnsep_jax.export import ModelLoadError
  try:
    server_socket = _listen(args.host, args.port)
  except OSError as e:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return cli.fail("serve", f"cannot listen on {args.host}:{args.port}: {reason}")
  try:
    app = create_app(args.checkpoint, args.work_dir, args.max_upload_mb)
  except ModelLoadError as e:
    server_socket.close()
    return cli.fail("serve", e)
  except OSError as e:
    server_socket.close()
    return cli.fail("serve", f"--work-dir {args.work_dir} is not a writable folder "
                             f"({e.strerror or e})")
  host, port = server_socket.getsockname()[:2]
  url_host = f"[{host}]" if ":" in host else host
  print(f"attnsep serve: open http://{url_host}:{port}/ in a browser (Ctrl+C stops)",
        flush=True)
  if host in ("127.0.0.1", "::1"):
    print("attnsep serve: only this machine can reach it; --host 0.0.0.0 opens it to the "
          "network (no password: trusted networks only)", flush=True)
  import uvicorn
  try:
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[server_socket])
  except KeyboardInterrupt:   # uvicorn re-raises Ctrl+C once it has shut down
    pass
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""attnsep serve: the HTTP routes, the job queue, the images, and the page in a real browser.

The browser test drives Debian's headless Chromium (/usr/bin/chromium, which
scripts/test.sh installs) with Playwright.  It fails when Chromium is
missing, unless ATTNSEP_SKIP_BROWSER=1 is set.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from attnsep_jax import SOURCES
from attnsep_jax.separate import main as separate_main
from attnsep_jax.web import images, server
from attnsep_jax.web.jobs import JobQueue
from attnsep_jax.web.work import process_song

CHROMIUM = "/usr/bin/chromium"
# Keeps Chromium off the network (docs/inference.md, "The web page").
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WAIT_MS = 120_000   # an upper bound for slow machines, not a speed requirement


@pytest.fixture(scope="module")
def mixture(synth_corpus):
  """A 3.5 s mixture of the built-in corpus."""
  return sorted(glob.glob(os.path.join(synth_corpus, "test", "*", "mixture.wav")))[0]


def _client(app):
  from starlette.testclient import TestClient
  return TestClient(app)


def _unstamped(wav_path):
  """The bytes of a float wav with its PEAK chunk's timestamp blanked: libsndfile
  stamps the second it wrote the file, so two runs of the same command differ
  in these 4 bytes only."""
  with open(wav_path, "rb") as f:
    data = f.read()
  at = data.find(b"PEAK")
  assert at > 0
  stamp = at + 12   # after the chunk's id, size and version
  return data[:stamp] + bytes(4) + data[stamp + 4:]


def _wait_for(client, job_id, states, timeout_seconds=60.0):
  import time
  deadline = time.monotonic() + timeout_seconds
  while time.monotonic() < deadline:
    job = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}[job_id]
    if job["state"] in states:
      return job
    time.sleep(0.05)
  raise AssertionError(f"job {job_id} never reached {states}: {job}")


def test_bad_uploads_get_one_line_messages_and_leave_nothing(tiny_export, tmp_path):
  work = tmp_path / "work"
  app = server.create_app(tiny_export, str(work), max_upload_mb=0.05)
  client = _client(app)
  noise = np.random.default_rng(0).bytes(4000)
  truncated = tmp_path / "t.wav"
  sf.write(truncated, np.full((4000, 2), 0.1, np.float32), 44100)
  cases = [("empty.wav", b"", 400, "empty.wav: the file is empty"),
           ("noise.mp3", noise, 400, "not in an audio format libsndfile recognises"),
           ("cut.wav", truncated.read_bytes()[:6000], 400, "cut.wav: truncated"),
           ("big.wav", bytes(60_000), 413, "")]
  for name, body, status, words in cases:
    reply = client.post(f"/api/jobs?name={name}", content=body)
    assert reply.status_code == status, (name, reply.text)
    if words:
      message = reply.json()["error"]
      assert words in message and "\n" not in message and "Traceback" not in message
  assert client.post("/api/jobs", content=b"abc").status_code == 400   # no name
  assert client.get("/api/jobs").json() == {"jobs": []}
  assert os.listdir(work) == []
  for route in ("/api/jobs/nope/stems/vocals", "/api/jobs/nope/zip",
                "/api/jobs/nope/images/vocals/waveform"):
    assert client.get(route).status_code == 404
  assert client.delete("/api/jobs/nope").status_code == 404


def test_a_song_that_fails_in_the_worker_stays_listed_until_deleted(tiny_export, tmp_path):
  work = str(tmp_path / "work")
  silent = tmp_path / "silent.wav"
  sf.write(silent, np.zeros((2000, 2), np.float32), 44100)
  with _client(server.create_app(tiny_export, work)) as client:
    job_id = client.post("/api/jobs?name=silent.wav", content=silent.read_bytes()).json()["id"]
    job = _wait_for(client, job_id, ("failed",))
    assert job["error"].startswith("is silent")
  # A new server on the same folder lists it again, and deleting removes its files.
  with _client(server.create_app(tiny_export, work)) as client:
    assert [j["state"] for j in client.get("/api/jobs").json()["jobs"]] == ["failed"]
    assert client.delete(f"/api/jobs/{job_id}").status_code == 200
    assert client.get("/api/jobs").json() == {"jobs": []}
  assert os.listdir(work) == []


def test_progress_comes_from_the_segments_as_they_are_separated(tiny_config,
                                                                tiny_model_and_params,
                                                                mixture, tmp_path):
  model, params = tiny_model_and_params
  reports = []
  queue = JobQueue(str(tmp_path / "work"), lambda job, report: None)
  job_id, folder = queue.new_folder()
  os.makedirs(os.path.join(folder, "song"))
  job = queue.submit(job_id, "song.wav")
  shutil.copy(mixture, job.song_path)
  process_song(job, lambda stage, fraction: reports.append((stage, fraction)), model, params,
               tiny_config, server.OUTPUTS)
  stages = [stage for stage, _ in reports]
  assert stages[0] == "reading" and stages[-1] == "drawing"
  separating = [fraction for stage, fraction in reports if stage == "separating"]
  assert len(separating) > 2 and separating == sorted(separating) and separating[-1] == 1.0
  assert job.stems == SOURCES and job.seconds == pytest.approx(3.5)
  for stem in SOURCES:
    for kind in server.IMAGE_KINDS:
      assert os.path.getsize(job.image_path(stem, kind)) > 0


def test_column_summary_of_a_tone_then_silence(tmp_path):
  rate, seconds = 8000, 2.0
  t = np.arange(int(rate * seconds)) / rate
  tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t) * (t < 1.0)
  path = str(tmp_path / "tone.wav")
  sf.write(path, np.stack([tone, tone], axis=1).astype(np.float32), rate, subtype="FLOAT")
  low, high, power = images.column_summary(path, columns=100, fft_samples=512)
  assert low.shape == high.shape == (100,) and power.shape == (100, 257)
  np.testing.assert_allclose(high[:45], 0.5, atol=0.01)
  np.testing.assert_allclose(low[:45], -0.5, atol=0.01)
  assert np.all(high[55:] == 0) and np.all(low[55:] == 0)
  peak_hz = np.fft.rfftfreq(512, 1 / rate)[power[:45].argmax(axis=1)]
  np.testing.assert_allclose(peak_hz, 1000.0, atol=rate / 512)
  # A full-scale sine is 0 dB: this one, at half scale, is -6 dB.
  assert 10 * np.log10(power[:45].max(axis=1)) == pytest.approx(np.full(45, -6.0), abs=0.5)
  bands, edges_hz = images.log_bands(power, rate, rows=40)
  assert bands.shape == (100, 40) and edges_hz[0] == images.LOWEST_HZ
  row = bands[:45].argmax(axis=1)
  assert np.all(edges_hz[row] <= 1000.0 + rate / 512) and np.all(edges_hz[row + 1] >= 1000.0)
  # A file shorter than the image width gives one column per sample.
  sf.write(path, np.full((10, 1), 0.25, np.float32), rate)
  assert images.column_summary(path)[1].shape == (10,)


def test_safe_upload_names():
  assert server.safe_name("../../etc/passwd") == "passwd"
  assert server.safe_name("C:\\music\\song.mp3") == "song.mp3"
  assert server.safe_name(".hidden.wav") == "hidden.wav"
  assert server.safe_name("a\x00b<c>.flac") == "abc.flac"
  assert server.safe_name("") == ""


def test_main_reports_bad_arguments_in_one_line(tiny_export, tmp_path, capsys):
  (tmp_path / "a_file").write_text("")
  for args, words in [(["--checkpoint", str(tmp_path / "nothing")], "does not exist"),
                      (["--checkpoint", tiny_export, "--work-dir", str(tmp_path / "a_file")],
                       "is not a writable folder")]:
    assert server.main(args + ["--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnsep serve: error: ") and words in err and "\n" not in err


# ---------------------------------------------------------------------------
# The page, end to end in Chromium
# ---------------------------------------------------------------------------
@pytest.fixture
def browser():
  if os.environ.get("ATTNSEP_SKIP_BROWSER") == "1":
    pytest.skip("ATTNSEP_SKIP_BROWSER=1")
  if not os.path.exists(CHROMIUM):
    pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium "
                "chromium-driver; scripts/test.sh does), or set ATTNSEP_SKIP_BROWSER=1")
  from playwright.sync_api import sync_playwright
  with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def served(tiny_export, tmp_path, repo_root):
  """``attnsep serve`` on a free port, in its own process; yields its URL."""
  cache = os.environ.get("ATTNSEP_JAX_CACHE", os.path.join(repo_root, ".jax_cache"))
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  process = subprocess.Popen(
      [sys.executable, "-m", "attnsep_jax.web.server", "--checkpoint", tiny_export,
       "--port", "0", "--max-upload-mb", "2", "--work-dir", str(tmp_path / "work")],
      cwd=repo_root, env=env, stdout=subprocess.PIPE, text=True)
  try:
    first = process.stdout.readline()
    assert "http://127.0.0.1:" in first, first
    yield first.split("open ")[1].split()[0]
  finally:
    process.send_signal(signal.SIGINT)
    try:
      process.wait(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()


def test_page_separates_a_song_and_plays_and_downloads_its_stems(browser, served, mixture,
                                                                 tiny_export, tmp_path):
  page = browser.new_context(accept_downloads=True).new_page()
  page.goto(served)
  page.wait_for_selector("#limits:has-text('up to 2 MB')")

  # Refusals: a file over the limit, and one that is not audio.
  page.set_input_files("#file", {"name": "huge.wav", "mimeType": "audio/wav",
                                 "buffer": bytes(3 * 2**20)})
  page.wait_for_selector("#message:has-text('huge.wav is 3.0 MB: larger than')")
  page.set_input_files("#file", {"name": "noise.mp3", "mimeType": "audio/mpeg",
                                 "buffer": np.random.default_rng(0).bytes(4000)})
  page.wait_for_selector("#message:has-text('noise.mp3: cannot read audio')")

  page.set_input_files("#file", mixture)
  page.wait_for_selector(".job[data-state=done] .stem-audio", state="attached",
                         timeout=WAIT_MS)
  assert page.locator("#message").is_hidden()
  page.wait_for_function(
      "[...document.querySelectorAll('.stem-audio')].every(a => a.readyState >= 1)"
      " && [...document.querySelectorAll('.pictures img')].every(i => i.naturalWidth > 0)",
      timeout=WAIT_MS)
  players = page.evaluate(
      "[...document.querySelectorAll('.stem-audio')].map(a => [a.dataset.stem, a.duration])")
  song = sf.info(mixture)
  assert [name for name, _ in players] == list(SOURCES)
  for _, duration in players:
    assert duration == pytest.approx(song.frames / song.samplerate, abs=1e-3)

  # Solo vocals: the others are muted; solo off again: all are heard.
  vocals = page.locator(".stem[data-stem=vocals]")
  vocals.locator(".solo").click()
  muted = page.evaluate("[...document.querySelectorAll('.stem-audio')].map(a => a.muted)")
  assert muted == [True, True, True, False]
  vocals.locator(".solo").click()
  page.locator(".stem[data-stem=drums] .mute").click()
  muted = page.evaluate("[...document.querySelectorAll('.stem-audio')].map(a => a.muted)")
  assert muted == [True, False, False, False]

  # The downloaded stem is the file attnsep separate writes.
  with page.expect_download() as download:
    vocals.locator(".download").click()
  downloaded = str(tmp_path / "vocals.wav")
  download.value.save_as(downloaded)
  cli_out = str(tmp_path / "cli")
  assert separate_main([mixture, "--checkpoint", tiny_export, "--out", cli_out, "--quiet"]) == 0
  cli_vocals = os.path.join(cli_out, "mixture", "vocals.wav")
  assert _unstamped(downloaded) == _unstamped(cli_vocals)
  with page.expect_download() as download:
    page.locator(".job .zip").click()
  archive = zipfile.ZipFile(download.value.path())
  assert sorted(archive.namelist()) == sorted(f"mixture/{s}.wav" for s in SOURCES)
  with open(downloaded, "rb") as f:
    assert archive.read("mixture/vocals.wav") == f.read()

  page.locator(".job .delete").click()
  page.wait_for_selector(".job", state="detached")

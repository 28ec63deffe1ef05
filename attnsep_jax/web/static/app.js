// The page of `attnsep serve`: uploads songs, follows their jobs, plays the stems.
// Plain JavaScript on the server's JSON routes (attnsep_jax/web/server.py).
"use strict";

const ACTIVE_POLL_MS = 500;    // while a job is queued or running
const IDLE_POLL_MS = 3000;     // picks up jobs queued from another tab
const DRIFT_SECONDS = 0.05;    // a stem further than this from the first is re-aligned

const info = { max_upload_mb: Infinity, stems: [], format: "wav" };
const cards = new Map();       // job id -> {job, element, player}
let uploading = 0;

function $(selector, root = document) { return root.querySelector(selector); }

function showMessage(text) {
  const message = $("#message");
  message.textContent = text;
  message.hidden = !text;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const hours = Math.floor(s / 3600), minutes = Math.floor(s / 60) % 60;
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

async function loadInfo() {
  try {
    Object.assign(info, await (await fetch("api/info")).json());
  } catch (error) {
    showMessage("The server does not answer: is `attnsep serve` still running?");
    return;
  }
  $("#model").textContent =
    `Model ${info.checkpoint}: ${info.stems.join(", ")} at ${info.sample_rate} Hz.`;
  $("#limits").textContent =
    `wav, flac, mp3, ogg, m4a and more, up to ${info.max_upload_mb} MB each. ` +
    "Songs are separated one at a time, in order, and stay listed until deleted.";
  $("#file").accept = ["audio/*", ...info.extensions].join(",");
}

// ----- uploads -----------------------------------------------------------

function tooLarge(name, bytes) {
  const megabytes = (bytes / 2 ** 20).toFixed(1);
  return `${name} is ${megabytes} MB: larger than this server's upload limit of ` +
    `${info.max_upload_mb} MB (attnsep serve --max-upload-mb).`;
}

function uploadOne(file) {
  if (file.size > info.max_upload_mb * 2 ** 20) {
    showMessage(tooLarge(file.name, file.size));
    return Promise.resolve();
  }
  const row = document.createElement("li");
  row.textContent = `uploading ${file.name}…`;
  $("#uploads").append(row);
  uploading += 1;
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();   // fetch() reports no upload progress
    request.open("POST", `api/jobs?name=${encodeURIComponent(file.name)}`);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        const percent = Math.round(100 * event.loaded / event.total);
        row.textContent = `uploading ${file.name}: ${percent}%`;
      }
    };
    request.onload = () => {
      if (request.status === 413) {
        showMessage(tooLarge(file.name, file.size));
      } else if (request.status >= 400) {
        let text = `${file.name}: the server refused it (HTTP ${request.status}).`;
        try { text = JSON.parse(request.responseText).error || text; } catch (e) { /* not JSON */ }
        showMessage(text);
      } else {
        showMessage("");
      }
      done();
    };
    request.onerror = () => {
      showMessage(`${file.name}: the upload failed: is \`attnsep serve\` still running?`);
      done();
    };
    function done() { row.remove(); uploading -= 1; refresh(); resolve(); }
    request.send(file);
  });
}

async function uploadAll(fileList) {
  for (const file of Array.from(fileList)) {
    await uploadOne(file);   // in order, so that the queue keeps the order chosen
  }
}

function setUpDropZone() {
  const zone = $("#drop");
  $("#file").addEventListener("change", (event) => {
    uploadAll(event.target.files).then(() => { event.target.value = ""; });
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    uploadAll(event.dataTransfer.files);
  });
}

// ----- jobs --------------------------------------------------------------

function statusText(job, position) {
  if (job.state === "queued") {
    if (!position) return "waiting";
    return `waiting: ${position} song${position > 1 ? "s" : ""} ahead`;
  }
  if (job.state === "running") {
    if (job.stage === "separating") return `separating: ${Math.floor(100 * job.progress)}%`;
    return job.stage === "drawing" ? "drawing the stems" : "reading the song";
  }
  if (job.state === "failed") return `failed: ${job.error}`;
  return `${clock(job.seconds)} · ${job.stems.length} stems`;
}

function updateCard(card, job, position) {
  const element = card.element;
  element.dataset.state = job.state;
  $(".status", element).textContent = statusText(job, position);
  const bar = $(".bar", element);
  bar.hidden = job.state === "done" || job.state === "failed";
  if (job.state === "running" && job.progress !== null) {   // separating or drawing
    bar.value = job.progress;
  } else if (job.state === "queued") {
    bar.value = 0;
  } else {
    bar.removeAttribute("value");   // reading the song: no fraction to show
  }
  if (job.state === "done" && !card.player) {
    card.player = buildPlayer(element, job);
  }
  card.job = job;
}

function createCard(job) {
  const element = $("#job-template").content.firstElementChild.cloneNode(true);
  element.dataset.id = job.id;
  $(".name", element).textContent = job.name;
  $(".delete", element).addEventListener("click", async () => {
    const card = cards.get(job.id);
    if (card && card.player) card.player.pause();
    await fetch(`api/jobs/${job.id}`, { method: "DELETE" });
    refresh();
  });
  return { job, element, player: null };
}

let refreshing = null;
let serverDown = false;

async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    let jobs;
    try {
      jobs = (await (await fetch("api/jobs")).json()).jobs;
    } catch (error) {
      showMessage("The server does not answer: is `attnsep serve` still running?");
      serverDown = true;
      return;
    }
    if (serverDown) showMessage("");
    serverDown = false;
    const list = $("#jobs");
    const seen = new Set();
    let waiting = jobs.filter((job) => job.state === "running").length;
    const positions = new Map();
    for (const job of jobs) {
      if (job.state === "queued") positions.set(job.id, waiting++);
    }
    [...jobs].reverse().forEach((job, index) => {   // newest first
      seen.add(job.id);
      if (!cards.has(job.id)) cards.set(job.id, createCard(job));
      const card = cards.get(job.id);
      updateCard(card, job, positions.get(job.id));
      if (list.children[index] !== card.element) {   // moved only when out of place
        list.insertBefore(card.element, list.children[index] || null);
      }
    });
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        if (card.player) card.player.pause();
        card.element.remove();
        cards.delete(id);
      }
    }
  })();
  try { await refreshing; } finally { refreshing = null; }
}

async function poll() {
  await refresh();
  const busy = uploading > 0 ||
    [...cards.values()].some((card) => ["queued", "running"].includes(card.job.state));
  setTimeout(poll, busy ? ACTIVE_POLL_MS : IDLE_POLL_MS);
}

// ----- players -----------------------------------------------------------

const players = new Set();

// One transport for all the stems of a job: the first stem's <audio> leads,
// the others follow its clock (re-aligned when they drift), and solo and mute
// set which ones are heard.
function buildPlayer(element, job) {
  const base = `api/jobs/${job.id}`;
  const stems = job.stems.map((stem) => buildStem(element, base, job, stem));
  const audios = stems.map((stem) => stem.audio);
  const leader = audios[0];
  const play = $(".play", element), seek = $(".seek", element), time = $(".time", element);
  const zip = $(".zip", element);
  zip.href = `${base}/zip`;
  zip.download = `${job.track} - stems.zip`;
  seek.max = job.seconds;
  $(".player", element).hidden = false;
  let frame = null;

  function showPosition() {
    const t = leader.currentTime;
    seek.value = t;
    time.textContent = `${clock(t)} / ${clock(job.seconds)}`;
    for (const stem of stems) stem.playhead.style.left = `${100 * t / job.seconds}%`;
  }
  function follow() {
    for (const audio of audios.slice(1)) {
      if (Math.abs(audio.currentTime - leader.currentTime) > DRIFT_SECONDS) {
        audio.currentTime = leader.currentTime;
      }
    }
    showPosition();
    frame = leader.paused ? null : requestAnimationFrame(follow);
  }
  function seekTo(seconds) {
    for (const audio of audios) audio.currentTime = seconds;
    showPosition();
  }
  const player = {
    async play() {
      for (const other of players) if (other !== player) other.pause();
      seekTo(leader.currentTime);
      await Promise.all(audios.map((audio) => audio.play()));
      play.textContent = "Pause";
      if (!frame) frame = requestAnimationFrame(follow);
    },
    pause() {
      for (const audio of audios) audio.pause();
      play.textContent = "Play";
    },
  };
  players.add(player);
  play.addEventListener("click", () => (leader.paused ? player.play() : player.pause()));
  seek.addEventListener("input", () => seekTo(Number(seek.value)));
  leader.addEventListener("ended", () => player.pause());
  for (const stem of stems) {
    stem.pictures.addEventListener("click", (event) => {
      const box = stem.pictures.getBoundingClientRect();
      seekTo(job.seconds * (event.clientX - box.left) / box.width);
    });
    stem.solo.addEventListener("click", () => toggle(stem.solo, stems));
    stem.mute.addEventListener("click", () => toggle(stem.mute, stems));
  }
  showPosition();
  return player;
}

function toggle(button, stems) {
  const pressed = (b) => b.getAttribute("aria-pressed") === "true";
  button.setAttribute("aria-pressed", String(!pressed(button)));
  const anySolo = stems.some((stem) => pressed(stem.solo));
  for (const stem of stems) {
    stem.audio.muted = pressed(stem.mute) || (anySolo && !pressed(stem.solo));
    stem.element.classList.toggle("silent", stem.audio.muted);
  }
}

function buildStem(jobElement, base, job, stem) {
  const element = $("#stem-template").content.firstElementChild.cloneNode(true);
  element.dataset.stem = stem;
  $(".label", element).textContent = stem;
  const download = $(".download", element);
  download.href = `${base}/stems/${stem}`;
  download.download = `${job.track} - ${stem}.${info.format}`;
  $(".waveform", element).src = `${base}/images/${stem}/waveform`;
  $(".waveform", element).alt = `waveform of ${stem}`;
  $(".spectrogram", element).src = `${base}/images/${stem}/spectrogram`;
  $(".spectrogram", element).alt = `spectrogram of ${stem}`;
  const audio = $("audio", element);
  audio.dataset.stem = stem;
  audio.src = `${base}/stems/${stem}`;
  $(".stems", jobElement).append(element);
  return {
    element, audio, pictures: $(".pictures", element), playhead: $(".playhead", element),
    solo: $(".solo", element), mute: $(".mute", element),
  };
}

loadInfo();
setUpDropZone();
poll();

// The life-safety alarm tone, synthesised with WebAudio (no audio files): P0 and P1 alarms that
// are active and unacknowledged sound until acknowledged, or until an operator silences that one
// alarm. Browsers only let a page make sound after a click or a key press on it: the login
// button counts; after a reload the page asks once ("enable sound"), and any click resumes it.

const PATTERNS = {
  // P0: an urgent two-tone call every second.
  P0: { every: 1000, tones: [[988, 0, 0.22], [740, 0.26, 0.22]], gain: 0.35 },
  // P1: one lower beep every three seconds.
  P1: { every: 3000, tones: [[660, 0, 0.3]], gain: 0.25 },
};

let context = null;
let timer = null;
let lastPlayed = -Infinity;
let level = "";  // "P0", "P1" or "" : what sounds now
let allowed = false;  // only for those who can acknowledge (a viewer could never stop it)
const silenced = new Set();
let lastAlarms = [];
const listeners = new Set();

/** Creates or resumes the audio context; call from a click or key handler. */
export function enable() {
  try {
    if (!context) context = new AudioContext();
    if (context.state !== "running") {
      context.resume().then(changed, changed);
    }
    context.onstatechange = changed;
  } catch {
    context = null;
  }
  changed();
}

/** Whether this user hears alarms at all (operators and above). */
export function allow(value) { allowed = !!value; }

/** Whether the page may make sound now. */
export function enabled() { return !!context && context.state === "running"; }

export function onChange(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

/** Stop the sound of one alarm (not of the others); it sounds again if it re-alarms. */
export function silence(alarmId) { silenced.add(alarmId); update(lastAlarms); }
export function unsilence(alarmId) {
  if (silenced.delete(alarmId)) update(lastAlarms);
}
export function isSilenced(alarmId) { return silenced.has(alarmId); }

/** Whether this alarm calls for sound: life safety, active, nobody acknowledged it yet. */
export function wantsSound(alarm) {
  return (alarm.priority === "P0" || alarm.priority === "P1")
    && alarm.state === "active_unacknowledged";
}

/** Whether this alarm is sounding now (wants sound and was not silenced). */
export function sounding(alarm) { return wantsSound(alarm) && !silenced.has(alarm.alarm_id); }

/** The board changed: work out what should sound. */
export function update(alarms) {
  lastAlarms = alarms;
  let next = "";
  const present = new Set();
  for (const alarm of alarms) {
    present.add(alarm.alarm_id);
    if (!wantsSound(alarm)) silenced.delete(alarm.alarm_id);  // acknowledged: forget
    else if (allowed && sounding(alarm) && (next === "" || alarm.priority < next)) {
      next = alarm.priority;
    }
  }
  for (const id of [...silenced]) if (!present.has(id)) silenced.delete(id);
  if (next !== level) {
    level = next;
    lastPlayed = -Infinity;
  }
  document.documentElement.dataset.sound = level;  // for tests and for the header's bell
  if (level && !timer) timer = setInterval(tick, 200);
  if (!level && timer) { clearInterval(timer); timer = null; }
  if (level) tick();
  changed();
}

/** What is sounding now: "P0", "P1" or "". */
export function currentLevel() { return level; }

function tick() {
  const pattern = PATTERNS[level];
  if (!pattern || !enabled()) return;
  const now = performance.now();
  if (now - lastPlayed < pattern.every) return;
  lastPlayed = now;
  const start = context.currentTime + 0.02;
  for (const [frequency, offset, length] of pattern.tones) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = "square";
    osc.frequency.value = frequency;
    const t0 = start + offset;
    gain.gain.setValueAtTime(0, t0);
    gain.gain.linearRampToValueAtTime(pattern.gain, t0 + 0.01);
    gain.gain.setValueAtTime(pattern.gain, t0 + length - 0.03);
    gain.gain.linearRampToValueAtTime(0, t0 + length);
    osc.connect(gain).connect(context.destination);
    osc.start(t0);
    osc.stop(t0 + length + 0.02);
  }
  document.documentElement.dataset.soundPlayed = String(Number(
    document.documentElement.dataset.soundPlayed || 0) + 1);
}

function changed() {
  document.documentElement.dataset.audio = enabled() ? "on" : "off";
  for (const callback of listeners) callback();
}

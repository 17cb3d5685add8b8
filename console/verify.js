// The verification panel (SPEC section 12): per type, the codes issued and the verification
// results of the last hour on this server, the subjects locked across the deployment, and what
// an attacker can achieve: the chance of guessing a code within the limits (the lock's failures
// over the number of codes). A form lifts a subject's lock. The editor shows the same chance
// for the draft beside its entropy (showEditorGuessChance).

import {
  $, ApiError, api, cell, describeError, formatEntropy, handleUnauthorized, setMessage,
  shortType, timeElement,
} from './common.js';

/** The verification results, in the answer's `verified` object and the table's columns. */
const RESULTS = ['approved', 'rejected', 'expired', 'locked', 'notFound'];

const panel = {
  limits: null, // the server's limits, from the last stats answer
  seq: 0, // answers to older loads are ignored
  editorBits: null, // the entropy the editor shows, for when the limits arrive later
  busy: false, // an unlock in flight
};

// ---------------------------------------------------------------------------------------------
// Words for numbers

const SUPERSCRIPT = { '-': '⁻', 0: '⁰', 1: '¹', 2: '²', 3: '³', 4: '⁴', 5: '⁵', 6: '⁶', 7: '⁷', 8: '⁸', 9: '⁹' };
const tenTo = (exponent) => `10${String(exponent).replace(/./g, (c) => SUPERSCRIPT[c])}`;

/**
 * A probability as "1 in N": N with two significant digits and thousands separators up to a
 * trillion ("1 in 1,000,000"), in scientific notation beyond ("1 in 2.6 × 10¹¹⁴"). Two digits:
 * the editor's entropy is rounded down to hundredths of a bit (up to 0.7% off), and the same
 * configuration should read the same in the editor and in the table.
 */
export function formatChance(p) {
  if (typeof p !== 'number' || Number.isNaN(p) || p < 0) return null;
  if (p >= 1) return 'certain: the limits allow trying every code';
  const n = 1 / p;
  if (!Number.isFinite(n)) return `less than 1 in ${tenTo(308)}`;
  if (n < 1e12) return `1 in ${Number(n.toPrecision(2)).toLocaleString('en-US')}`;
  let exponent = Math.floor(Math.log10(n));
  let mantissa = (n / 10 ** exponent).toFixed(1);
  if (mantissa === '10.0') {
    mantissa = '1.0';
    exponent += 1;
  }
  return `1 in ${mantissa} × ${tenTo(exponent)}`;
}

/** "86400s" as "1 day (86400s)"; "30s" as "30 seconds". */
function formatDuration(text) {
  const seconds = Number.parseFloat(text);
  if (!Number.isFinite(seconds)) return String(text ?? '–');
  const units = [[86400, 'day'], [3600, 'hour'], [60, 'minute']];
  for (const [size, unit] of units) {
    if (seconds >= size && seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${unit}${n === 1 ? '' : 's'} (${text})`;
    }
  }
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

const plural = (n, one, many) => `${n} ${Number(n) === 1 ? one : many}`;

// ---------------------------------------------------------------------------------------------
// The limits and the table

function renderLimits(limits) {
  const rows = [
    ['maxAttempts', 'Checks of one code', `at most ${limits.maxAttempts}, then it is dead`],
    ['lock', 'Lock', `after ${plural(limits.lockAfter, 'failure', 'failures')} in a row, `
      + `a subject is locked for ${formatDuration(limits.lockFor)}`],
    ['pending', 'Codes pending per subject', `at most ${limits.pending}; another retires the oldest`],
    ['issuing', 'Issuing per subject',
      (Number.parseFloat(limits.resendAfter) > 0
        ? `one per ${formatDuration(limits.resendAfter)}, ` : 'no wait between codes, ')
      + `at most ${limits.issuesPerWindow} per ${formatDuration(limits.window)}`],
  ];
  $('verify-limits').replaceChildren(...rows.map(([key, term, description]) => {
    const div = document.createElement('div');
    div.dataset.limit = key;
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = description;
    div.append(dt, dd);
    return div;
  }));
  $('chance-hint').textContent = `Chance of a guess: the chance that someone guessing one `
    + `subject's code succeeds before it is locked, that is ${limits.lockAfter} guesses over the `
    + 'number of codes the type can produce (the alphabet size to the power of the length, '
    + 'fewer when each class is required).';
}

function renderStats(types) {
  const rows = types.map((t) => {
    const tr = document.createElement('tr');
    tr.dataset.type = t.generatorType;
    const type = cell(shortType(t.generatorType), 'type');
    type.title = t.generatorType;
    tr.append(type, cell(t.issued ?? '0', 'issued'));
    for (const result of RESULTS) tr.append(cell(t.verified?.[result] ?? '0', result));
    const locked = cell(t.lockedSubjects ?? '0', 'lockedSubjects');
    if (Number(t.lockedSubjects) > 0) locked.classList.add('has-locks');
    const chance = cell(formatChance(t.guessChance) ?? '–', 'guessChance');
    if (typeof t.guessChance === 'number') chance.title = `${t.guessChance.toPrecision(3)}`;
    tr.append(locked, cell(formatEntropy(t.entropyBits), 'entropyBits'), chance);
    return tr;
  });
  $('stats-body').replaceChildren(...rows);
}

/** Loads the stats (needs iam.read); the limits also feed the editor's guess chance. */
export async function loadStats() {
  const seq = ++panel.seq;
  setMessage('stats-status', 'Loading…');
  setMessage('stats-error', '');
  try {
    const answer = await api('GET', '/admin/v1/verifications/stats');
    if (seq !== panel.seq) return;
    panel.limits = answer.limits ?? null;
    if (panel.limits) renderLimits(panel.limits);
    renderStats(answer.result ?? []);
    setMessage('stats-status', '');
    $('stats-status').append('Updated ', timeElement(new Date().toISOString()), '.');
  } catch (error) {
    if (seq !== panel.seq || handleUnauthorized(error)) return;
    panel.limits = null;
    setMessage('stats-status', '');
    setMessage('stats-error', `Could not load the verification counts. ${describeError(error, 'iam.read')}`);
  }
  showEditorGuessChance(panel.editorBits);
}

$('refresh-stats').addEventListener('click', () => loadStats());

/** Forgets everything the session showed (on sign-out). */
export function resetVerification() {
  panel.seq += 1;
  panel.limits = null;
  panel.editorBits = null;
  panel.busy = false;
  $('stats-body').replaceChildren();
  $('verify-limits').replaceChildren();
  setMessage('chance-hint', '');
  setMessage('stats-status', '');
  setMessage('stats-error', '');
  $('unlock-form').reset();
  $('unlock-form').removeAttribute('aria-busy');
  showUnlockViolations([]);
  setUnlockStatus('');
  showEditorGuessChance(null);
}

// ---------------------------------------------------------------------------------------------
// The editor: the draft's chance of a guess within the lock's failures, beside its entropy

/** lockAfter / 2^entropyBits, shown only when both are known. */
export function showEditorGuessChance(bits) {
  panel.editorBits = typeof bits === 'number' ? bits : null;
  const lockAfter = panel.limits?.lockAfter;
  const text = panel.editorBits !== null && typeof lockAfter === 'number'
    ? formatChance(lockAfter / 2 ** panel.editorBits)
    : null;
  $('guess-chance-part').hidden = !text;
  $('guess-chance-failures').textContent = text ? plural(lockAfter, 'failure', 'failures') : '';
  $('guess-chance').textContent = text ?? '';
}

// ---------------------------------------------------------------------------------------------
// Lifting a lock (needs iam.write; the audit log records it)

const UNLOCK_FIELDS = {
  generatorType: { error: 'u-type-error', input: 'u-type' },
  subject: { error: 'u-subject-error', input: 'u-subject' },
};

/** Shows each violation next to its field; answers the ones that belong to no field. */
function showUnlockViolations(violations) {
  const messages = { generatorType: [], subject: [] };
  const other = [];
  for (const v of violations) {
    const field = String(v.field).replace(/\[.*$/, '');
    if (messages[field]) messages[field].push(v.description);
    else other.push(`${v.field}: ${v.description}`);
  }
  for (const [field, { error, input }] of Object.entries(UNLOCK_FIELDS)) {
    setMessage(error, messages[field].join(' '));
    if (messages[field].length) $(input).setAttribute('aria-invalid', 'true');
    else $(input).removeAttribute('aria-invalid');
  }
  return other;
}

function setUnlockStatus(text, failed = false) {
  setMessage('unlock-status', text);
  $('unlock-status').classList.toggle('failed', failed);
}

/** The answer in words. */
function unlockedText(answer) {
  if (!answer.unlocked) return 'Nothing to unlock: this subject had no failures and no lock.';
  const failures = `${plural(answer.failures ?? 0, 'failure', 'failures')} cleared`;
  const lock = answer.wasLocked ? 'the lock lifted' : 'it was not locked';
  const sequence = answer.details?.sequence;
  return `Unlocked: ${failures}, ${lock}${sequence ? `; recorded as event ${sequence}` : ''}.`;
}

function focusFirstInvalid() {
  document.querySelector('#unlock-form [aria-invalid="true"]')?.focus();
}

$('unlock-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  // The button is not disabled while waiting: a disabled button would lose the focus.
  if (panel.busy) return;
  const generatorType = $('u-type').value;
  // Exactly as typed: a subject is compared byte for byte.
  const subject = $('u-subject').value;
  const local = [];
  if (!generatorType) local.push({ field: 'generatorType', description: 'Choose the type of the code.' });
  if (!subject) local.push({ field: 'subject', description: 'Enter the subject the code was issued for.' });
  if (local.length) {
    showUnlockViolations(local);
    setUnlockStatus('Not unlocked: fix the fields marked above.', true);
    focusFirstInvalid();
    return;
  }
  panel.busy = true;
  $('unlock-form').setAttribute('aria-busy', 'true');
  setUnlockStatus('Unlocking…');
  try {
    const answer = await api('POST', '/admin/v1/verifications/_unlock', { generatorType, subject });
    showUnlockViolations([]);
    setUnlockStatus(unlockedText(answer));
    await loadStats();
  } catch (error) {
    if (handleUnauthorized(error)) return;
    const other = error instanceof ApiError ? showUnlockViolations(error.violations) : [];
    const marked = document.querySelector('#unlock-form [aria-invalid="true"]');
    setUnlockStatus(marked
      ? `Not unlocked: fix the fields marked above. ${other.join(' ')}`.trim()
      : `Not unlocked. ${describeError(error, 'iam.write')} ${other.join(' ')}`.trim(), true);
    focusFirstInvalid();
  } finally {
    panel.busy = false;
    $('unlock-form').removeAttribute('aria-busy');
  }
});

// ---------------------------------------------------------------------------------------------
// An unlock in the audit log, for a history that lists one

/** The list items of an `instance.verification.unlocked` event's `unlock`. */
export function unlockEventChanges(unlock) {
  const item = (key, label, value) => {
    const li = document.createElement('li');
    li.dataset.field = key;
    const name = document.createElement('span');
    name.className = 'field-name';
    name.textContent = `${label}: `;
    li.append(name, value);
    return li;
  };
  const hash = String(unlock.subjectHash ?? '');
  const subject = document.createElement('code');
  subject.textContent = hash.length > 16 ? `${hash.slice(0, 16)}…` : hash || '–';
  subject.title = hash;
  return [
    item('subject', `subject (keyed hash, key ${unlock.keyId || '?'})`, subject),
    item('failures', 'failures cleared', String(unlock.failures ?? 0)),
    unlock.lockedUntil
      ? item('lockedUntil', 'was locked until', timeElement(unlock.lockedUntil))
      : item('lockedUntil', 'lock', 'none (it was not locked)'),
  ];
}

// secretgen admin console: plain DOM code, no framework, no build step. It talks to the same
// JSON API as any other client with the token the admin pastes. The page's CSP forbids inline
// script and style, so everything visual is done by toggling classes and the `hidden` attribute,
// and all text goes in through textContent (never innerHTML: names come from users).
// common.js holds the API client and the helpers; verify.js the verification panel.

import {
  $, ApiError, api, button, cell, classesOf, describeError, formatEntropy, handleUnauthorized,
  session, setMessage, shortType, timeElement, yesNo,
} from './common.js';
import { loadStats, resetVerification, showEditorGuessChance, unlockEventChanges } from './verify.js';

const TOKEN_KEY = 'secretgen.console.token';
const PREVIEW_DELAY_MS = 250;

/** The fields of a generator's configuration, in the order the API and the form use. */
const CLASS_FIELDS = ['includeLowerLetters', 'includeUpperLetters', 'includeDigits', 'includeSymbols'];
const BOOL_FIELDS = [...CLASS_FIELDS, 'excludeAmbiguous', 'requireEachClass'];
const CONFIG_FIELDS = ['length', 'expiry', ...BOOL_FIELDS];

/** Where a violation of each field is shown (the four classes share one message). */
const ERROR_TARGET = {
  length: 'length-error',
  expiry: 'expiry-error',
  includeLowerLetters: 'classes-error',
  includeUpperLetters: 'classes-error',
  includeDigits: 'classes-error',
  includeSymbols: 'classes-error',
  excludeAmbiguous: 'excludeAmbiguous-error',
  requireEachClass: 'requireEachClass-error',
  entropyBits: 'entropyBits-error',
};

/** The inputs a field's violation marks invalid (entropy depends on the length above all). */
const ERROR_INPUTS = {
  length: ['f-length'],
  entropyBits: ['f-length'],
  expiry: ['f-expiry'],
  excludeAmbiguous: ['f-excludeAmbiguous'],
  requireEachClass: ['f-requireEachClass'],
  ...Object.fromEntries(CLASS_FIELDS.map((f) => [f, [`f-${f}`]])),
};

const state = {
  generators: [],
  selected: null, // generator type being edited
  previewTimer: 0,
  previewSeq: 0, // answers to older previews are ignored
  revokeId: null,
};

// ---------------------------------------------------------------------------------------------
// Sign in / out

function showSignedIn(signedIn) {
  $('signin').hidden = signedIn;
  $('app').hidden = !signedIn;
  $('signout-button').hidden = !signedIn;
}

async function signIn(token) {
  // The generators search needs iam.read: it proves the token and fills the table at once.
  const answer = await api('POST', '/admin/v1/secretgenerators/_search', {}, token);
  session.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  showSignedIn(true);
  setMessage('app-error', '');
  renderGenerators(answer.result ?? []);
  await Promise.all([loadTokens(), loadStats()]);
}

function signOut(reason) {
  sessionStorage.clear();
  session.token = null;
  state.generators = [];
  state.selected = null;
  state.previewSeq += 1;
  clearTimeout(state.previewTimer);
  // Forget everything the previous session showed, the new token above all.
  $('generators-body').replaceChildren();
  $('tokens-body').replaceChildren();
  $('history-list').replaceChildren();
  $('editor').hidden = true;
  $('history').hidden = true;
  hideNewToken();
  resetVerification();
  $('token-form').reset();
  $('signin-form').reset();
  showSignedIn(false);
  setMessage('signin-error', reason ?? '');
  $('token-input').focus();
}

function signInErrorText(error) {
  if (!(error instanceof ApiError)) return `Could not reach the server (${error.message}).`;
  if (error.status === 401) return 'That token is not known.';
  if (error.status === 403) return 'That token cannot read the configuration (needs iam.read).';
  return `The server refused the token: ${error.message}`;
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = $('token-input').value.trim();
  const submit = $('signin-button');
  if (!token) {
    setMessage('signin-error', 'Paste a token first.');
    $('token-input').setAttribute('aria-invalid', 'true');
    $('token-input').focus();
    return;
  }
  submit.disabled = true;
  setMessage('signin-error', '');
  try {
    await signIn(token);
    $('token-input').value = '';
    $('token-input').removeAttribute('aria-invalid');
    $('generators-title').setAttribute('tabindex', '-1');
    $('generators-title').focus();
  } catch (error) {
    setMessage('signin-error', signInErrorText(error));
    $('token-input').setAttribute('aria-invalid', 'true');
    $('token-input').focus();
  } finally {
    submit.disabled = false;
  }
});

$('signout-button').addEventListener('click', () => signOut());
session.onUnauthorized = () => signOut('The token is no longer accepted. Sign in again.');

// ---------------------------------------------------------------------------------------------
// Generators table

function renderGenerators(generators) {
  state.generators = generators;
  const rows = generators.map((g) => {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'generator-row';
    tr.dataset.type = g.generatorType;
    if (g.generatorType === state.selected) tr.classList.add('selected');
    const type = cell(shortType(g.generatorType), 'type');
    type.title = g.generatorType;
    tr.append(
      type,
      cell(g.length, 'length'),
      cell(g.expiry, 'expiry'),
      cell(classesOf(g), 'classes'),
      cell(yesNo(g.excludeAmbiguous), 'excludeAmbiguous'),
      cell(yesNo(g.requireEachClass), 'requireEachClass'),
      cell(formatEntropy(g.entropyBits), 'entropyBits'),
      cell(g.details?.sequence ?? '–', 'sequence'),
      cell(timeElement(g.details?.changeDate), 'changeDate'),
    );
    const edit = button('Edit', 'small', () => openEditor(g.generatorType));
    edit.setAttribute('aria-label', `Edit ${shortType(g.generatorType)}`);
    edit.dataset.testid = 'edit-button';
    tr.append(cell(edit, 'actions'));
    return tr;
  });
  $('generators-body').replaceChildren(...rows);
}

async function loadGenerators() {
  const answer = await api('POST', '/admin/v1/secretgenerators/_search', {});
  renderGenerators(answer.result ?? []);
}

// ---------------------------------------------------------------------------------------------
// Editor with live preview

function fillForm(config) {
  $('f-length').value = String(config.length);
  $('f-expiry').value = config.expiry ?? '';
  for (const field of BOOL_FIELDS) $(`f-${field}`).checked = Boolean(config[field]);
}

/** The form as a config, or the violations that keep it from being one. */
function readForm() {
  const violations = [];
  const lengthText = $('f-length').value.trim();
  const length = Number(lengthText);
  if (lengthText === '' || !Number.isInteger(length)) {
    violations.push({ field: 'length', description: 'must be a whole number' });
  }
  const config = { length, expiry: $('f-expiry').value.trim() };
  for (const field of BOOL_FIELDS) config[field] = $(`f-${field}`).checked;
  return { config, violations };
}

function showViolations(violations) {
  // Group the messages by where they are shown, without repeating one message.
  const byTarget = new Map();
  const invalidInputs = new Set();
  const other = [];
  for (const v of violations) {
    const target = ERROR_TARGET[v.field];
    const text = target === 'entropyBits-error' ? `Entropy ${v.description}` : v.description;
    if (!target) {
      other.push(`${v.field}: ${v.description}`);
      continue;
    }
    if (!byTarget.has(target)) byTarget.set(target, new Set());
    byTarget.get(target).add(text);
    for (const id of ERROR_INPUTS[v.field] ?? []) invalidInputs.add(id);
  }
  for (const target of new Set(Object.values(ERROR_TARGET))) {
    setMessage(target, [...(byTarget.get(target) ?? [])].join(' '));
  }
  setMessage('other-errors', other.join(' '));
  for (const field of CONFIG_FIELDS) {
    const input = $(`f-${field}`);
    if (invalidInputs.has(input.id)) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

function showPreview(answer) {
  showViolations(answer.violations ?? []);
  $('entropy').textContent = typeof answer.entropyBits === 'number'
    ? `${answer.entropyBits.toFixed(2)} bits`
    : '–';
  // Beside it, the chance of guessing such a code within the lock's failures.
  showEditorGuessChance(answer.entropyBits);
  const samples = (answer.samples ?? []).map((code) => {
    const li = document.createElement('li');
    li.dataset.testid = 'sample';
    const c = document.createElement('code');
    c.textContent = code;
    li.append(c);
    return li;
  });
  $('samples').replaceChildren(...samples);
  $('preview').classList.toggle('invalid', !answer.valid);
}

async function runPreview() {
  const type = state.selected;
  if (!type) return;
  const seq = ++state.previewSeq;
  const { config, violations } = readForm();
  if (violations.length) {
    showPreview({ valid: false, violations, entropyBits: null, samples: [] });
    return;
  }
  try {
    const answer = await api('POST', `/admin/v1/secretgenerators/${type}/_preview`, config);
    if (seq === state.previewSeq) showPreview(answer);
  } catch (error) {
    if (seq !== state.previewSeq || handleUnauthorized(error)) return;
    if (error instanceof ApiError && error.violations.length) {
      showPreview({ valid: false, violations: error.violations, entropyBits: null, samples: [] });
    } else {
      setMessage('other-errors', describeError(error, 'iam.read'));
    }
  }
}

/** Debounced: one preview per pause in typing. */
function schedulePreview() {
  clearTimeout(state.previewTimer);
  setMessage('save-status', '');
  state.previewTimer = setTimeout(runPreview, PREVIEW_DELAY_MS);
}

async function openEditor(type) {
  const generator = state.generators.find((g) => g.generatorType === type);
  if (!generator) return;
  state.selected = type;
  for (const row of $('generators-body').rows) {
    row.classList.toggle('selected', row.dataset.type === type);
  }
  $('editor-title').textContent = `Edit ${shortType(type)}`;
  $('editor-title').title = type;
  $('history-title').textContent = `History of ${shortType(type)}`;
  fillForm(generator);
  showPreview({ valid: true, violations: [], entropyBits: generator.entropyBits, samples: [] });
  setMessage('save-status', '');
  $('editor').hidden = false;
  $('history').hidden = false;
  $('editor-title').focus();
  $('editor').scrollIntoView({ block: 'start' });
  clearTimeout(state.previewTimer);
  await Promise.all([runPreview(), loadHistory(type)]);
}

function closeEditor() {
  const type = state.selected;
  state.selected = null;
  state.previewSeq += 1;
  clearTimeout(state.previewTimer);
  $('editor').hidden = true;
  $('history').hidden = true;
  for (const row of $('generators-body').rows) row.classList.remove('selected');
  // Back to where the admin came from.
  const edit = document.querySelector(`tr[data-type="${type}"] button`);
  edit?.focus();
}

$('edit-form').addEventListener('input', schedulePreview);
$('edit-form').addEventListener('change', schedulePreview);
$('close-editor').addEventListener('click', closeEditor);

$('edit-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const type = state.selected;
  if (!type) return;
  // A pending preview must not overwrite what the save says.
  clearTimeout(state.previewTimer);
  state.previewSeq += 1;
  const { config, violations } = readForm();
  if (violations.length) {
    showViolations(violations);
    setMessage('save-status', 'Not saved: fix the fields marked above.');
    return;
  }
  const save = $('save-button');
  save.disabled = true;
  setMessage('save-status', 'Saving…');
  try {
    const answer = await api('PUT', `/admin/v1/secretgenerators/${type}`, config);
    showViolations([]);
    setMessage('save-status', `Saved: sequence ${answer.details?.sequence ?? '?'}`);
    // The verification panel's entropy and guess chance follow the new configuration.
    await Promise.all([loadGenerators(), loadHistory(type), loadStats()]);
    runPreview();
  } catch (error) {
    if (handleUnauthorized(error)) return;
    if (error instanceof ApiError && error.violations.length) {
      showViolations(error.violations);
      $('samples').replaceChildren();
      setMessage('save-status', 'Not saved: fix the fields marked above.');
      const first = document.querySelector('#edit-form [aria-invalid="true"]');
      first?.focus();
    } else {
      setMessage('save-status', `Not saved. ${describeError(error, 'iam.write')}`);
    }
  } finally {
    save.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// History (audit log)

function formatValue(field, value) {
  if (value === undefined || value === null) return '–';
  if (typeof value === 'boolean') return yesNo(value);
  return String(value);
}

/** What an event did, in words: generator events are about the type the history is of. */
function eventKind(type) {
  if (type === 'instance.verification.unlocked') return 'lifted a lock';
  if (type?.endsWith('.added')) return 'created it';
  return 'changed it';
}

/** The fields a configuration event set (all of them) or changed (the others are left out). */
function configChanges(event) {
  const items = [];
  const config = event.config ?? {};
  for (const field of CONFIG_FIELDS) {
    const before = event.previous?.[field];
    const after = config[field];
    if (event.previous && before === after) continue;
    const item = document.createElement('li');
    item.dataset.field = field;
    const name = document.createElement('span');
    name.className = 'field-name';
    name.textContent = `${field}: `;
    item.append(name);
    item.append(event.previous
      ? `${formatValue(field, before)} → ${formatValue(field, after)}`
      : formatValue(field, after));
    items.push(item);
  }
  return items;
}

function historyEntry(event) {
  const li = document.createElement('li');
  li.dataset.testid = 'history-entry';
  li.dataset.sequence = event.sequence;
  if (event.eventType) li.dataset.eventType = event.eventType;

  const head = document.createElement('p');
  head.className = 'history-head';
  const who = document.createElement('strong');
  who.textContent = event.creator || 'unknown';
  head.append(who, ` ${eventKind(event.eventType)} · `, timeElement(event.creationDate),
    ` · sequence ${event.sequence}`);
  li.append(head);

  const changes = document.createElement('ul');
  changes.className = 'changes';
  // An unlock carries no configuration: it says whose failures it cleared (a keyed hash).
  changes.append(...(event.unlock ? unlockEventChanges(event.unlock) : configChanges(event)));
  if (!changes.children.length) {
    const item = document.createElement('li');
    item.textContent = 'no field changed';
    changes.append(item);
  }
  li.append(changes);
  return li;
}

async function loadHistory(type) {
  setMessage('history-status', 'Loading…');
  try {
    const answer = await api('POST', '/admin/v1/events/_search', {
      generatorType: type,
      query: { asc: false, limit: 20 },
    });
    if (type !== state.selected) return;
    const events = answer.result ?? [];
    $('history-list').replaceChildren(...events.map(historyEntry));
    setMessage('history-status', events.length ? '' : 'No changes recorded.');
  } catch (error) {
    if (handleUnauthorized(error)) return;
    setMessage('history-status', `Could not load the history. ${describeError(error, 'iam.read')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Tokens

function renderTokens(tokens) {
  const rows = tokens.map((t) => {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'token-row';
    tr.dataset.id = t.id;
    tr.dataset.name = t.name;
    const revoke = button('Revoke', 'small danger', () => askRevoke(t));
    revoke.setAttribute('aria-label', `Revoke ${t.name}`);
    revoke.dataset.testid = 'revoke-button';
    tr.append(
      cell(t.name, 'name'),
      cell(t.id, 'id'),
      cell((t.permissions ?? []).join(', ') || 'none', 'permissions'),
      cell(timeElement(t.creationDate), 'creationDate'),
      cell(t.expiresAt ? timeElement(t.expiresAt) : 'never', 'expiresAt'),
      cell(revoke, 'actions'),
    );
    return tr;
  });
  $('tokens-body').replaceChildren(...rows);
}

async function loadTokens() {
  try {
    const answer = await api('POST', '/admin/v1/tokens/_search', {});
    renderTokens(answer.result ?? []);
  } catch (error) {
    if (handleUnauthorized(error)) return;
    setMessage('token-status', `Could not list the tokens. ${describeError(error, 'iam.read')}`);
  }
}

function hideNewToken() {
  $('new-token').hidden = true;
  $('new-token-value').textContent = '';
  $('new-token-name').textContent = '';
  setMessage('copy-status', '');
}

const TOKEN_FIELD_ERRORS = { name: 't-name-error', permissions: 't-permissions-error', expiry: 't-expiry-error' };
const TOKEN_FIELD_INPUTS = { name: ['t-name'], expiry: ['t-expiry'],
  permissions: ['t-perm-iam-read', 't-perm-iam-write', 't-perm-codes-generate',
    't-perm-codes-issue', 't-perm-codes-verify'] };

function showTokenViolations(violations) {
  const messages = { name: [], permissions: [], expiry: [] };
  const other = [];
  for (const v of violations) {
    // Field paths may be like "permissions[0]".
    const field = String(v.field).replace(/\[.*$/, '');
    if (messages[field]) messages[field].push(v.description);
    else other.push(`${v.field}: ${v.description}`);
  }
  for (const [field, id] of Object.entries(TOKEN_FIELD_ERRORS)) {
    setMessage(id, messages[field].join(' '));
    for (const input of TOKEN_FIELD_INPUTS[field]) {
      if (messages[field].length) $(input).setAttribute('aria-invalid', 'true');
      else $(input).removeAttribute('aria-invalid');
    }
  }
  return other;
}

$('token-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('t-name').value.trim();
  const permissions = [...document.querySelectorAll('#token-form input[name="permission"]:checked')]
    .map((input) => input.value);
  const expiry = $('t-expiry').value.trim();
  const local = [];
  if (!name) local.push({ field: 'name', description: 'Give the token a name.' });
  if (!permissions.length) local.push({ field: 'permissions', description: 'Choose at least one permission.' });
  if (local.length) {
    showTokenViolations(local);
    setMessage('token-status', 'Not created: fix the fields marked above.');
    return;
  }
  const body = { name, permissions };
  if (expiry) body.expiry = expiry;
  const create = $('create-token-button');
  create.disabled = true;
  setMessage('token-status', 'Creating…');
  try {
    const answer = await api('POST', '/admin/v1/tokens', body);
    showTokenViolations([]);
    $('token-form').reset();
    setMessage('token-status', `Created token ${answer.id}.`);
    $('new-token-name').textContent = name;
    $('new-token-value').textContent = answer.token;
    setMessage('copy-status', '');
    $('new-token').hidden = false;
    $('copy-token').focus();
    await loadTokens();
  } catch (error) {
    if (handleUnauthorized(error)) return;
    const other = error instanceof ApiError ? showTokenViolations(error.violations) : [];
    setMessage('token-status', `Not created. ${describeError(error, 'iam.write')} ${other.join(' ')}`.trim());
  } finally {
    create.disabled = false;
  }
});

$('copy-token').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText($('new-token-value').textContent);
    setMessage('copy-status', 'Copied to the clipboard.');
  } catch {
    // No clipboard access (e.g. not allowed): let the admin select it by hand.
    const range = document.createRange();
    range.selectNodeContents($('new-token-value'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    setMessage('copy-status', 'Could not copy: the token is selected, press Ctrl+C.');
  }
});

$('dismiss-token').addEventListener('click', () => {
  hideNewToken();
  $('t-name').focus();
});

// Revoking asks first, in a modal <dialog> (keyboard: Escape cancels, focus stays inside).
function askRevoke(token) {
  state.revokeId = token.id;
  $('revoke-text').textContent = `Revoke the token "${token.name}" (${token.id})? `
    + 'Clients using it will be refused at once. This cannot be undone.';
  $('revoke-dialog').showModal();
  $('revoke-cancel').focus();
}

$('revoke-cancel').addEventListener('click', () => $('revoke-dialog').close());
$('revoke-dialog').addEventListener('close', () => {
  state.revokeId = null;
});

$('revoke-confirm').addEventListener('click', async () => {
  const id = state.revokeId;
  $('revoke-dialog').close();
  if (!id) return;
  setMessage('token-status', 'Revoking…');
  try {
    await api('DELETE', `/admin/v1/tokens/${encodeURIComponent(id)}`);
    setMessage('token-status', `Revoked token ${id}.`);
    await loadTokens();
    $('t-name').focus();
  } catch (error) {
    if (handleUnauthorized(error)) return;
    setMessage('token-status', `Not revoked. ${describeError(error, 'iam.write')}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Start: a token from earlier in this tab signs in again silently.

async function start() {
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (!saved) {
    showSignedIn(false);
    return;
  }
  try {
    await signIn(saved);
  } catch (error) {
    signOut(signInErrorText(error));
  }
}

start();
document.documentElement.dataset.ready = 'true';

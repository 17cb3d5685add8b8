// What the console's modules share: the JSON API client with the session's token, errors in
// words, and small DOM helpers. All text goes in through textContent (never innerHTML: names
// and subjects come from users).

export const $ = (id) => document.getElementById(id);

/** The signed-in session: the token, and what to do when the server stops accepting it. */
export const session = {
  token: null,
  onUnauthorized: () => {},
};

// ---------------------------------------------------------------------------------------------
// API

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
    // google.rpc.BadRequest field violations, flattened.
    this.violations = (body?.details ?? [])
      .flatMap((d) => d?.fieldViolations ?? []);
  }
}

export async function api(method, path, body, token = session.token) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON (should not happen): the status alone tells the story.
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Words for an error from an action that needs a permission. */
export function describeError(error, permission) {
  if (!(error instanceof ApiError)) return `Could not reach the server (${error.message}).`;
  if (error.status === 403) return `This token may not do that (needs ${permission}).`;
  return `The server refused: ${error.message}`;
}

/** A 401 in the middle of a session means the token was revoked or expired. */
export function handleUnauthorized(error) {
  if (error instanceof ApiError && error.status === 401) {
    session.onUnauthorized();
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Small formatting and DOM helpers

export const shortType = (type) => type.replace(/^SECRET_GENERATOR_TYPE_/, '');

export function formatDate(text) {
  if (!text) return '–';
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

export function timeElement(text) {
  const time = document.createElement('time');
  if (text) time.dateTime = text;
  time.textContent = formatDate(text);
  return time;
}

/** A configuration's character classes, e.g. "A–Z 0–9". */
export function classesOf(config) {
  const names = [];
  if (config.includeLowerLetters) names.push('a–z');
  if (config.includeUpperLetters) names.push('A–Z');
  if (config.includeDigits) names.push('0–9');
  if (config.includeSymbols) names.push('symbols');
  return names.join(' ') || 'none';
}

export const yesNo = (value) => (value ? 'yes' : 'no');
export const formatEntropy = (bits) => (typeof bits === 'number' ? bits.toFixed(2) : '–');

export function cell(text, column) {
  const td = document.createElement('td');
  if (column) td.dataset.col = column;
  if (text instanceof Node) td.append(text);
  else td.textContent = String(text);
  return td;
}

export function button(text, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  if (className) b.className = className;
  b.addEventListener('click', onClick);
  return b;
}

export function setMessage(id, text) {
  const el = $(id);
  el.textContent = text ?? '';
}

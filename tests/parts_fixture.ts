/** @module Test content parts: a `file` part with inline data, and the base64 clients send it in. */

const encoder = new TextEncoder();

/** A `file` content part whose `file_data` is `file_data` (a data URL or plain base64). */
export function file(file_data: string, filename?: string) {
  return { type: "file", file: { ...(filename ? { filename } : {}), file_data } };
}

/** Bytes, or text as UTF-8, in base64. */
export function base64(bytes: Uint8Array | string): string {
  return (typeof bytes === "string" ? encoder.encode(bytes) : bytes).toBase64();
}

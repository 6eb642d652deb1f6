// Server-sent events over fetch: EventSource cannot POST or carry the CSRF header, so the
// stream is read with a ReadableStream and split into events here.

export async function* sseData(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n\r\n", end) ? 4 : 2));
        const data = dataOf(block);
        if (data !== null) yield data;
      }
    }
    const rest = dataOf(buffer);
    if (rest !== null) yield rest;
  } finally {
    reader.cancel().catch(() => {}); // a consumer that stops early closes the connection
  }
}

function dataOf(block) {
  const lines = block.split(/\r\n|\n|\r/).filter((line) => line.startsWith("data:"));
  if (!lines.length) return null;
  return lines.map((line) => line.slice(5).replace(/^ /, "")).join("\n");
}

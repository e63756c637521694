// Drives a kagura UI message stream endpoint with the `ai` package's own client, as a
// React app's useChat would, and prints what the client made of it as JSON.
//
//   node tests/js/chat.mjs <url> [chat|abort|read] [text]
//
// chat:  AbstractChat (what @ai-sdk/react's Chat extends) with DefaultChatTransport sends
//        `text` as a user message; prints {status, error, messages, data, finish}.
// abort: the same, and chat.stop() (an AbortController abort) once text has arrived.
// read:  DefaultChatTransport.sendMessages + readUIMessageStream; prints {chunks (the
//        chunk types, in order), snapshots, message, error}.
// The client validates every chunk against the ai package's schema; a chunk it rejects,
// or one out of order, ends as an error in the output.
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from "ai";

const [url, mode = "chat", text = "Hello"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node chat.mjs <url> [chat|abort|read] [text]");
  process.exit(2);
}

class State {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor(options) {
    super({ ...options, state: new State() });
  }
}

function print(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

async function chat(abort) {
  const data = [];
  let finish;
  const chat = new Chat({
    transport: new DefaultChatTransport({ api: url }),
    onData: (part) => data.push(structuredClone(part)), // the client mutates its parts
    onFinish: ({ isAbort, isError, finishReason }) => {
      finish = { isAbort, isError, finishReason };
    },
  });
  const sent = chat.sendMessage({ text });
  if (abort) {
    const started = Date.now();
    while (Date.now() - started < 10000) {
      const last = chat.lastMessage;
      const answered =
        last?.role === "assistant" && last.parts.some((p) => p.type === "text" && p.text);
      if (answered) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await chat.stop();
  }
  await sent;
  print({
    status: chat.status,
    error: chat.error?.message ?? null,
    messages: chat.messages,
    data,
    finish,
  });
}

async function read() {
  const transport = new DefaultChatTransport({ api: url });
  const chunks = [];
  let error = null;
  let snapshots = 0;
  let message = null;
  try {
    const stream = await transport.sendMessages({
      chatId: "chat-1",
      messages: [{ id: "user-1", role: "user", parts: [{ type: "text", text }] }],
      abortSignal: undefined,
      trigger: "submit-message",
      messageId: undefined,
    });
    const recorded = stream.pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          chunks.push(chunk.type);
          controller.enqueue(chunk);
        },
      }),
    );
    for await (const snapshot of readUIMessageStream({
      stream: recorded,
      terminateOnError: true,
    })) {
      snapshots += 1;
      message = snapshot;
    }
  } catch (e) {
    error = e?.message ?? String(e);
  }
  print({ chunks, snapshots, message, error });
}

if (mode === "read") {
  await read();
} else if (mode === "chat" || mode === "abort") {
  await chat(mode === "abort");
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}

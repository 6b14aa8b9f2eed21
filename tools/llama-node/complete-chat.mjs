// Answers a chat request as llama-server --jinja does (/v1/chat/completions with tools): the GGUF's own Jinja renders
// the prompt, llama.cpp generates greedily (with the lazy tool-call grammar its chat format sets up), and its chat
// parser turns the output into content and tool_calls. Through @fugood/llama.node's prebuilt llama.cpp.
//
//   node complete-chat.mjs REQUEST.json RESULT.json
//   REQUEST: {"model": "x.gguf", "messages": [...], "tools": [...]?, "max_tokens": N?}
//   RESULT:  {"text": raw output, "content": ..., "tool_calls": [...], "chat_format": N}
// The result goes to a file because llama.cpp logs to stdout.
import { readFileSync, writeFileSync } from 'node:fs'
import { loadModel } from '@fugood/llama.node'

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const context = await loadModel({ model: request.model, n_ctx: 1024, n_threads: 2 })
try {
  const result = await context.completion({
    messages: request.messages,
    jinja: true,
    tools: request.tools?.length ? request.tools : undefined,
    temperature: 0,
    top_k: 1,
    seed: 1,
    n_predict: request.max_tokens ?? 64,
  })
  writeFileSync(process.argv[3], JSON.stringify({
    text: result.text, content: result.content ?? null, tool_calls: result.tool_calls ?? [], chat_format: result.chat_format,
  }))
} finally {
  await context.release()
}

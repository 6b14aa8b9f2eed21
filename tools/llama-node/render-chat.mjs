// Renders a chat request with a GGUF's own chat template the way llama-server --jinja does: llama.cpp's
// common_chat_templates_apply (its minja Jinja engine and the chat-format detection that picks a tool-call parser),
// through @fugood/llama.node's prebuilt llama.cpp. Only the vocabulary is loaded.
//
//   node render-chat.mjs REQUEST.json RESULT.json
//   REQUEST: {"model": "x.gguf", "messages": [...], "tools": [...]?, "add_generation_prompt": true?}
//   RESULT:  {"prompt": ..., "chat_format": N, "tokens": [...]}, where "tokens" is llama.cpp's tokenization of the prompt
//            with special tokens parsed and no BOS added (llama-server adds BOS itself when the vocabulary asks for it).
// The result goes to a file because llama.cpp logs to stdout; a template error exits 1 with the message on stderr.
import { readFileSync, writeFileSync } from 'node:fs'
import { loadModel } from '@fugood/llama.node'

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const context = await loadModel({ model: request.model, vocab_only: true, n_ctx: 512, n_threads: 1 })
try {
  const result = context.getFormattedChat(request.messages, undefined, {
    jinja: true,
    tools: request.tools?.length ? request.tools : undefined,
    add_generation_prompt: request.add_generation_prompt ?? true,
  })
  if (result.type !== 'jinja') throw new Error(`llama.cpp did not run the GGUF's Jinja (it used ${result.type})`)
  const { tokens } = await context.tokenize(result.prompt)
  writeFileSync(process.argv[3], JSON.stringify({ prompt: result.prompt, chat_format: result.chat_format, tokens: Array.from(tokens) }))
} finally {
  await context.release()
}

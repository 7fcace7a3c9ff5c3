/*
 * tokenizer.h - building an em_vocab from GGUF metadata (tokenizer.ggml.*).
 *
 * The public functions (em_tokenize, em_detokenize, em_token_to_piece,
 * em_vocab_*) are declared in ember.h.  The model loader calls
 * em_vocab_load once and owns the result.
 */
#ifndef EM_TOKENIZER_H
#define EM_TOKENIZER_H

#include "gguf/gguf.h"

/* Reads tokenizer.ggml.model, .tokens, .scores, .token_type, .merges,
 * .pre, the special-token ids and add_bos/add_eos flags.  Everything the
 * vocab needs is copied, so the reader may be closed afterwards. */
em_status em_vocab_load(em_vocab **out, const em_gguf *g);
void em_vocab_free(em_vocab *vocab);

#endif /* EM_TOKENIZER_H */

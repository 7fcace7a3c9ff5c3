/*
 * ember.h - the public C API of libember.
 *
 * ember loads GGUF models and runs them through one batch-first engine.
 * Every type here is opaque; every object has an *_init/_free (or
 * *_load/_free) pair, and every fallible function returns an em_status.
 * On failure the object passed in is left unchanged and a one-line
 * description of the error is available from em_last_error() on the
 * calling thread.  Nothing in the library exits the process.
 */
#ifndef EMBER_H
#define EMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_VERSION "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum em_status {
    EM_OK = 0,
    EM_ERR_INVALID_ARG,   /* a caller passed something out of range       */
    EM_ERR_IO,            /* open/read/mmap/write failed                  */
    EM_ERR_FORMAT,        /* a file is malformed, truncated or hostile    */
    EM_ERR_UNSUPPORTED,   /* a valid file uses something ember lacks      */
    EM_ERR_NOMEM,         /* an allocation failed                         */
    EM_ERR_CONTEXT_FULL,  /* the KV cache has no room for the batch       */
    EM_ERR_NOT_FOUND,     /* a named key, tensor or token does not exist  */
    EM_ERR_INTERNAL       /* a bug: an invariant did not hold             */
} em_status;

/* A static name for a status code ("invalid argument", ...). */
const char *em_status_str(em_status s);

/* The last error message set on this thread (never NULL, may be ""). */
const char *em_last_error(void);

/* ---------------------------------------------------------- tensor types */

/* Tensor element types, numbered as GGUF numbers them (ggml_type). */
typedef enum em_type {
    EM_TYPE_F32 = 0,
    EM_TYPE_F16 = 1,
    EM_TYPE_Q4_0 = 2,
    EM_TYPE_Q4_1 = 3,
    EM_TYPE_Q5_0 = 6,
    EM_TYPE_Q5_1 = 7,
    EM_TYPE_Q8_0 = 8,
    EM_TYPE_Q8_1 = 9,
    EM_TYPE_Q2_K = 10,
    EM_TYPE_Q3_K = 11,
    EM_TYPE_Q4_K = 12,
    EM_TYPE_Q5_K = 13,
    EM_TYPE_Q6_K = 14,
    EM_TYPE_Q8_K = 15,
    EM_TYPE_IQ2_XXS = 16,
    EM_TYPE_IQ2_XS = 17,
    EM_TYPE_IQ3_XXS = 18,
    EM_TYPE_IQ1_S = 19,
    EM_TYPE_IQ4_NL = 20,
    EM_TYPE_IQ3_S = 21,
    EM_TYPE_IQ2_S = 22,
    EM_TYPE_IQ4_XS = 23,
    EM_TYPE_I8 = 24,
    EM_TYPE_I16 = 25,
    EM_TYPE_I32 = 26,
    EM_TYPE_I64 = 27,
    EM_TYPE_F64 = 28,
    EM_TYPE_IQ1_M = 29,
    EM_TYPE_BF16 = 30,
    EM_TYPE_COUNT = 31
} em_type;

/* The canonical name of a type ("Q4_K"), or NULL for an unknown id. */
const char *em_type_name(em_type t);

/* ----------------------------------------------------------------- model */

typedef int32_t em_token;
typedef int32_t em_seq_id;
typedef int32_t em_pos;

typedef struct em_model em_model;     /* weights + hparams + vocab (immutable) */
typedef struct em_context em_context; /* KV cache + scratch for one engine     */
typedef struct em_vocab em_vocab;     /* tokenizer, owned by its model         */

typedef struct em_model_params {
    bool use_mmap;   /* map the file (true) or read it into memory   */
    bool use_mlock;  /* lock the weights in memory (needs ulimit -l) */
    bool vocab_only; /* load the tokenizer only, no tensors           */
    bool repack;     /* row-interleave the weights for the GEMM kernels
                      * at load time (default; see docs/PERFORMANCE.md) */
} em_model_params;

em_model_params em_model_default_params(void);

/* Loads a GGUF model.  On success *out owns the mapping of the file. */
em_status em_model_load(em_model **out, const char *path,
                        const em_model_params *params);
void em_model_free(em_model *model);

const em_vocab *em_model_vocab(const em_model *model);
int32_t em_model_n_vocab(const em_model *model);
int32_t em_model_n_embd(const em_model *model);
int32_t em_model_n_layer(const em_model *model);
int32_t em_model_n_ctx_train(const em_model *model);
uint64_t em_model_n_params(const em_model *model);
uint64_t em_model_size(const em_model *model); /* bytes of tensor data */
/* A one-line description ("llama 260K F32"), written into buf. */
int32_t em_model_desc(const em_model *model, char *buf, size_t size);
/* The architecture name from general.architecture ("llama", "qwen2"). */
const char *em_model_arch(const em_model *model);
/* False for encoders (bert, nomic-bert): every row sees the whole text,
 * so they compute embeddings and cannot generate text. */
bool em_model_is_causal(const em_model *model);

/* How a model's rows pool into one embedding ({arch}.pooling_type, in
 * llama.cpp's numbering): none given (causal LMs), the mean of the rows,
 * or the first row (BERT's [CLS]). */
typedef enum em_pooling { EM_POOL_NONE = 0, EM_POOL_MEAN = 1, EM_POOL_CLS = 2 } em_pooling;
em_pooling em_model_pooling(const em_model *model);

/* --------------------------------------------------------------- context */

typedef struct em_context_params {
    int32_t n_ctx;      /* KV cache positions; 0 = the model's n_ctx_train */
    int32_t n_batch;    /* most token rows one em_decode takes             */
    int32_t n_threads;  /* worker threads; 0 = physical cores              */
    em_type kv_type;    /* cache storage: F16 (default), F32, Q8_0, ...     */
    int32_t n_seq_max;  /* distinct sequence ids the cache accepts (<= 4096)*/
    bool embeddings;    /* also keep the final-norm hidden state of the rows
                         * that ask for logits (em_get_embeddings)           */
    bool kv_full;       /* windowed and chunked layers keep every position
                         * too (the layout before layer groups; for
                         * comparisons)                                      */
} em_context_params;

em_context_params em_context_default_params(void);

em_status em_context_init(em_context **out, const em_model *model,
                          const em_context_params *params);
void em_context_free(em_context *ctx);
int32_t em_context_n_ctx(const em_context *ctx);

/* ----------------------------------------------------------------- batch */

/*
 * A batch is a flat list of token rows; one em_decode computes them all.
 * Rows of one sequence must appear in increasing position order.
 */
typedef struct em_batch {
    int32_t n_tokens;
    em_token *token;    /* [n_tokens] token ids                          */
    em_pos *pos;        /* [n_tokens] position of each row in its seq    */
    em_seq_id *seq_id;  /* [n_tokens] sequence each row belongs to       */
    int8_t *logits;     /* [n_tokens] nonzero: compute logits for row    */
    em_status *status;  /* [n_tokens] per-row result, written by em_decode
                         * (em_batch_init allocates it; NULL in a batch
                         * built by hand: see em_decode)                 */
    int32_t capacity;   /* rows allocated                                */
} em_batch;

em_status em_batch_init(em_batch *batch, int32_t capacity);
void em_batch_free(em_batch *batch);
void em_batch_clear(em_batch *batch);
/* Appends one row; EM_ERR_INVALID_ARG when the batch is full. */
em_status em_batch_add(em_batch *batch, em_token token, em_pos pos,
                       em_seq_id seq, bool want_logits);

/*
 * Runs the model over the rows of the batch, appending each row's K and V
 * to the cache.  A row's position must be the next one of its sequence
 * (em_kv_seq_pos_max, counting the batch's earlier rows of it).
 *
 * With batch->status, em_decode computes every row it can: a row that
 * cannot be placed (a sequence id >= n_seq_max, a token outside the
 * vocabulary, a position that is not the sequence's next:
 * EM_ERR_INVALID_ARG; no free KV block for its sequence:
 * EM_ERR_CONTEXT_FULL) gets that error in status[i], so do the later rows
 * of the same sequence, and the other rows are computed and get EM_OK.
 * em_decode then returns EM_OK.  It returns an error when nothing was
 * computed: for reasons not tied to a row (an empty or too large batch),
 * or when every row failed (the first row's error; status is filled in).
 * Without status (NULL) the batch is all or nothing: on an error nothing
 * was written.
 */
em_status em_decode(em_context *ctx, const em_batch *batch);

/* Logits of the i-th row of the last batch that asked for them, in batch
 * order: [n_vocab] floats, valid until the next em_decode.  NULL if row i
 * did not ask for logits. */
const float *em_get_logits(em_context *ctx, int32_t i);

/* The final-norm hidden state of row i of the last batch: [n_embd]
 * floats, valid until the next em_decode.  NULL unless the context was
 * made with embeddings and row i asked for logits. */
const float *em_get_embeddings(em_context *ctx, int32_t i);

/* One text's embedding: runs tokens[n] as one batch of sequence 0 (n <=
 * n_batch; the sequence is cleared before and after), pools the final rows
 * as the model says (mean or first row for encoders such as bert and
 * nomic-bert; the last row for models without a pooling type) and writes
 * the L2-normalised vector to out[n_embd].  The context must be made with
 * embeddings. */
em_status em_embed(em_context *ctx, const em_token *tokens, int32_t n, float *out);

/*
 * The KV cache is paged: blocks of em_kv_stats.block_size positions from
 * one pool of n_ctx positions, a block table per sequence, blocks shared
 * read-only between sequences and copied when one of them writes.
 * Layers that see only a sliding window or a chunk of the past keep their
 * keys and values in pools of their own (a group per window or chunk size)
 * and give back the blocks that leave it, unless kv_full is set.
 */

/* Removes positions [p0, p1) of a sequence (p0 < 0: from 0; p1 < 0: to the
 * end); seq < 0: every sequence.  Only the end of a sequence can go:
 * EM_ERR_UNSUPPORTED for a range with positions after it, and
 * EM_ERR_INVALID_ARG for seq >= n_seq_max.  In a model with sliding-window
 * or chunked layers the sequence can end shorter than p0, when blocks
 * those layers gave back (they keep only what a next row can see) were
 * evicted since: em_kv_seq_pos_max says where to continue. */
em_status em_kv_remove(em_context *ctx, em_seq_id seq, em_pos p0, em_pos p1);
void em_kv_clear(em_context *ctx);
/* Makes sequence dst hold positions [0, p1) of sequence src (p1 < 0: all),
 * sharing the stored keys and values (no copy): a common prompt is
 * computed once and continued by several sequences.  What dst held before
 * is dropped.  p0 must be 0 (or negative); EM_ERR_INVALID_ARG for ids
 * outside [0, n_seq_max).  With p1 short of src's length, dst can end
 * shorter, as with em_kv_remove. */
em_status em_kv_seq_cp(em_context *ctx, em_seq_id src, em_seq_id dst, em_pos p0, em_pos p1);
/* One past the largest position stored for seq, 0 when empty. */
em_pos em_kv_seq_pos_max(const em_context *ctx, em_seq_id seq);

/* Prefix reuse.  seq must be empty.  Attaches the longest run of cached
 * full blocks whose tokens equal tokens[0..] (a block matches only after
 * the same preceding tokens), sharing them read-only; returns how many
 * leading positions seq now holds: a multiple of the block size, at most
 * n - 1, so that the caller always decodes at least the last prompt token.
 * -1 (and em_last_error) for a bad id or a sequence that is not empty.
 * The cache learns a block's tokens when em_decode fills it; unreferenced
 * such blocks stay cached and are evicted least-recently-used when free
 * blocks run out. */
int32_t em_kv_seq_reuse_prefix(em_context *ctx, em_seq_id seq, const em_token *tokens, int32_t n);

/* One group of layers that see the same span of the past: each has a
 * pool of blocks of its own, and windowed or chunked groups give blocks
 * back as their sequences move on. */
typedef struct em_kv_group_stats {
    int32_t n_layer;         /* layers in the group                       */
    int32_t window;          /* their sliding window, 0 = none            */
    int32_t chunk;           /* their attention chunk, 0 = none           */
    int32_t n_blocks;        /* blocks in the group's pool                */
    int32_t n_used;          /* blocks referenced by at least one sequence */
    int32_t n_cached;        /* unreferenced blocks kept for prefix reuse */
    int32_t n_free;          /* blocks holding nothing                    */
} em_kv_group_stats;
#define EM_KV_STATS_GROUPS 4

/* n_blocks .. n_free describe group 0, the one that keeps the most (every
 * position when some layer is global): its blocks bound the context. */
typedef struct em_kv_stats {
    int32_t block_size;      /* positions per block                       */
    int32_t n_blocks;        /* blocks in the pool                        */
    int32_t n_used;          /* blocks referenced by at least one sequence */
    int32_t n_cached;        /* unreferenced blocks kept for prefix reuse */
    int32_t n_free;          /* blocks holding nothing                    */
    uint64_t prefix_lookups; /* em_kv_seq_reuse_prefix calls              */
    uint64_t prefix_hits;    /* blocks reused by them                     */
    int32_t n_groups;        /* entries of groups                         */
    em_kv_group_stats groups[EM_KV_STATS_GROUPS];
    uint64_t bytes;          /* keys and values allocated, every group    */
    uint64_t bytes_used;     /* of them in blocks some sequence references */
} em_kv_stats;
void em_kv_get_stats(const em_context *ctx, em_kv_stats *out);

/* ------------------------------------------------------------- tokenizer */

typedef enum em_vocab_type {
    EM_VOCAB_NONE = 0,
    EM_VOCAB_SPM = 1, /* SentencePiece-style (llama)         */
    EM_VOCAB_BPE = 2, /* byte-level BPE (gpt2)               */
    EM_VOCAB_WPM = 3  /* WordPiece (bert)                    */
} em_vocab_type;

em_vocab_type em_vocab_kind(const em_vocab *vocab);
int32_t em_vocab_n_tokens(const em_vocab *vocab);
em_token em_vocab_bos(const em_vocab *vocab); /* -1 when the model has none */
em_token em_vocab_eos(const em_vocab *vocab);
em_token em_vocab_eot(const em_vocab *vocab);
bool em_vocab_add_bos(const em_vocab *vocab);
bool em_vocab_add_eos(const em_vocab *vocab);
/* True for tokens that end generation (EOS, EOT, <|im_end|>, ...). */
bool em_vocab_is_eog(const em_vocab *vocab, em_token t);
/* The raw text of a token as stored in the vocabulary. */
const char *em_vocab_text(const em_vocab *vocab, em_token t);

/*
 * Converts text to tokens.  add_special adds BOS/EOS as the model asks;
 * parse_special turns special-token text ("<|im_start|>") into its token.
 * len < 0: text is NUL-terminated.  On EM_OK, *n_tokens is the number of
 * tokens the text has; they are written to tokens[] only when that count
 * fits n_max (tokens may be NULL with n_max 0 to ask for the count), so
 * *n_tokens > n_max means "call again with a larger buffer".  On an error
 * (no vocabulary: EM_ERR_UNSUPPORTED; bad arguments: EM_ERR_INVALID_ARG)
 * nothing is written and em_last_error() says why.
 */
em_status em_tokenize(const em_vocab *vocab, const char *text, int32_t len,
                      em_token *tokens, int32_t n_max, int32_t *n_tokens,
                      bool add_special, bool parse_special);

/* Like em_tokenize, into a buffer it allocates: on EM_OK *out (release it
 * with free()) holds *n_out tokens; on failure *out and *n_out are
 * untouched. */
em_status em_tokenize_alloc(const em_vocab *vocab, const char *text, int32_t len,
                            bool add_special, bool parse_special,
                            em_token **out, int32_t *n_out);

/* Writes the text of one token (not NUL-terminated); returns its length or
 * -(needed), or INT32_MIN for a token id outside the vocabulary.
 * special: render control tokens as their text. */
int32_t em_token_to_piece(const em_vocab *vocab, em_token t, char *buf,
                          int32_t size, bool special);

/* Converts tokens back to text (NUL-terminated when room); returns length
 * or -(needed).  remove_special drops a leading BOS / trailing EOS;
 * unparse_special renders control tokens as their text. */
int32_t em_detokenize(const em_vocab *vocab, const em_token *tokens,
                      int32_t n_tokens, char *text, int32_t size,
                      bool remove_special, bool unparse_special);

/* --------------------------------------------------------------- sampler */

typedef struct em_logit_bias {
    em_token token;
    float bias; /* added to the logit; -INFINITY bans the token */
} em_logit_bias;

typedef struct em_sampler_params {
    float temp;             /* <= 0: greedy                                  */
    int32_t top_k;          /* <= 0: off                                     */
    float top_p;            /* >= 1: off                                     */
    float min_p;            /* <= 0: off                                     */
    float repeat_penalty;   /* 1: off                                        */
    int32_t repeat_last_n;  /* window the penalties look at; -1: whole ctx   */
    float freq_penalty;     /* 0: off                                        */
    float presence_penalty; /* 0: off                                        */
    uint64_t seed;          /* default 42; every value is deterministic:     */
                            /* same seed, same logits, same tokens           */
    const em_logit_bias *logit_bias; /* [n_logit_bias], copied at init       */
    int32_t n_logit_bias;
} em_sampler_params;

typedef struct em_sampler em_sampler;

em_sampler_params em_sampler_default_params(void);
em_status em_sampler_init(em_sampler **out, const em_sampler_params *params,
                          int32_t n_vocab);
void em_sampler_free(em_sampler *s);
/* Picks a token from logits[n_vocab]; does not record it (see accept). */
em_token em_sampler_sample(em_sampler *s, const float *logits);
/* Records a token in the penalty history (prompt tokens too). */
void em_sampler_accept(em_sampler *s, em_token t);
void em_sampler_reset(em_sampler *s);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */

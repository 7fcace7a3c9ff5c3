/*
 * eval.h - measuring how good a model is: perplexity, log-likelihood
 * benchmarks (multiple choice and completion), KL divergence of one model
 * from another, and the capability-per-cost report that puts quality next
 * to speed, price and memory.
 *
 * Everything here runs through the public engine (em_decode on batches);
 * nothing has a private forward pass.  Results are deterministic: items are
 * scored in file order, text is cut into chunks in text order, and nothing
 * is sampled.
 *
 * Conventions follow the two tools whose numbers people compare against:
 *   - perplexity and KL divergence follow llama.cpp's llama-perplexity
 *     (whole text tokenized with BOS as the model adds it, chunks of n_ctx
 *     tokens whose first token becomes BOS, only the second half of each
 *     chunk scored, standard error from the per-token NLL variance);
 *   - benchmark prompts and metrics follow lm-evaluation-harness (acc,
 *     acc_norm normalised by the choice's length in characters, winogrande
 *     by partial scoring, lambada by greedy last-word match).
 * docs/EVAL.md gives the details and measured figures.
 */
#ifndef EM_EVAL_H
#define EM_EVAL_H

#include "core/core.h"

#include <stdio.h>

/* ------------------------------------------------------------ helpers */

/* Tokenizes text into a heap array (*out, freed by the caller).
 * add_special adds BOS/EOS as the model's vocabulary asks. */
em_status em_eval_tokenize(const em_vocab *vocab, const char *text, size_t len, bool add_special,
                           em_token **out, int32_t *n_out);

/* log p(tok) under softmax(logits[n_vocab]), computed in double precision
 * (max-shifted, so any finite logits work).  When argmax is not NULL it
 * receives the index of the largest logit (the first one on ties). */
double em_eval_log_prob(const float *logits, int32_t n_vocab, em_token tok, em_token *argmax);

/* Linear-interpolated percentile (fraction in [0, 1]) of sorted[n], the
 * same definition llama-perplexity uses for its KLD percentiles. */
double em_eval_percentile(const double *sorted, size_t n, double fraction);

/* Standard error of a mean of n samples whose sum is s and sum of squares
 * s2: sqrt(sample variance / n), with the sample variance over n - 1.
 * 0 when n < 2. */
double em_eval_mean_se(double s, double s2, int64_t n);

/* --------------------------------------------------------- the engine */

/* Sequence ids a context accepts at most (em_context_params.n_seq_max). */
#define EM_EVAL_MAX_SEQ 64

/* One context plus one reusable batch, sized for an evaluation. */
typedef struct em_eval_engine {
    const em_model *model;
    em_context *ctx;
    em_batch batch;       /* [n_batch] rows, reused for every decode        */
    int32_t n_ctx;        /* KV cache positions                             */
    int32_t n_batch;      /* most rows one em_decode takes                  */
    int32_t n_seq_max;    /* sequence ids the cache accepts                 */
    int32_t n_vocab;      /* floats in one row of logits                    */
    int32_t *row_choice;  /* [n_batch] which choice each batch row belongs to */
    em_token *row_target; /* [n_batch] token a row's logits score, -1: none  */
} em_eval_engine;

em_status em_eval_engine_init(em_eval_engine *e, const em_model *model, int32_t n_ctx, int32_t n_batch,
                              int32_t n_seq_max, int32_t n_threads, em_type kv_type);
void em_eval_engine_free(em_eval_engine *e);

/* ---------------------------------------------------------- perplexity */

typedef struct em_ppl_params {
    int32_t n_ctx;      /* tokens per chunk (llama-perplexity's -c), default 512 */
    int32_t n_chunks;   /* chunks to score; <= 0: every whole chunk            */
    int32_t n_batch;    /* rows per em_decode; <= 0: min(n_ctx, 512)           */
    int32_t n_threads;  /* 0: physical cores                                   */
    em_type kv_type;    /* EM_TYPE_F16 (default) or EM_TYPE_F32                */
} em_ppl_params;

em_ppl_params em_ppl_default_params(void);

typedef struct em_ppl_result {
    int32_t n_tokens;   /* tokens of the whole text, BOS included              */
    int32_t n_ctx;      /* tokens per chunk                                    */
    int32_t n_chunks;   /* chunks scored                                       */
    int64_t n_scored;   /* tokens scored: n_chunks * (n_ctx - 1 - n_ctx / 2)   */
    double nll_mean;    /* mean negative log-likelihood per scored token, nats */
    double ppl;         /* exp(nll_mean)                                       */
    double ppl_se;      /* ppl * standard error of nll_mean                    */
    double seconds;     /* wall time of the decodes and scoring                */
} em_ppl_result;

/* Called after each chunk with its 1-based number and the running value
 * (perplexity of every token scored so far). */
typedef void (*em_eval_progress_fn)(void *user, int32_t done, int32_t total, double running);

/* How many chunks of n_ctx a text of n_tokens gives, with the checks
 * llama-perplexity makes (at least 2 * n_ctx tokens, n_ctx >= 4). */
em_status em_eval_chunk_count(int32_t n_tokens, int32_t n_ctx, int32_t n_chunks_wanted, int32_t *n_chunks);

/* Checks what every chunked evaluation needs: a context within the
 * model's training context, enough tokens, tokens inside the vocabulary;
 * gives the number of chunks. */
em_status em_eval_check_chunking(const em_model *model, const em_token *tokens, int32_t n_tokens,
                                 const em_ppl_params *p, int32_t *n_chunks);

/* The token that replaces each chunk's first token (BOS when the model
 * adds BOS), or -1 for none. */
em_token em_eval_chunk_bos(const em_model *model);

/* Rows per decode for chunks of n_ctx: n_batch, or 512 when <= 0, at most
 * n_ctx. */
int32_t em_eval_chunk_batch(int32_t n_batch, int32_t n_ctx);

/* Decodes positions [p0, p1) of one chunk (chunk[0..n_ctx), already in
 * the cache below p0) in sequence 0.  Position 0 gets token bos instead of
 * chunk[0] when bos >= 0.  Rows whose position lies in the scored half,
 * [n_ctx / 2, n_ctx - 2], ask for logits; row i of the batch is position
 * p0 + i.  Shared by perplexity and KL divergence. */
em_status em_eval_decode_slice(em_eval_engine *e, const em_token *chunk, int32_t n_ctx, int32_t p0, int32_t p1,
                               em_token bos);

/* Perplexity of tokens[n_tokens] (the whole text, tokenized with BOS as the
 * model adds it). */
em_status em_eval_ppl(const em_model *model, const em_token *tokens, int32_t n_tokens, const em_ppl_params *p,
                      em_eval_progress_fn progress, void *user, em_ppl_result *out);

/* ------------------------------------------------------- KL divergence */

typedef struct em_kld_result {
    int32_t n_tokens, n_ctx, n_chunks;
    int64_t n_scored;   /* token positions compared                             */
    double kld_mean;    /* mean KL(base || model) per position, nats           */
    double kld_se;      /* its standard error                                  */
    double kld_p99;     /* 99th percentile of the per-position KLD             */
    double kld_max;     /* largest per-position KLD                            */
    double top1;        /* fraction of positions where both argmaxes agree     */
    double top1_se;
    double ppl_base, ppl_model; /* perplexities on the same scored tokens      */
    double dppl;        /* ppl_model - ppl_base                                */
    double seconds;
} em_kld_result;

/* Compares model's next-token distributions with base's on the same
 * chunks as em_eval_ppl.  The models must share the vocabulary (checked:
 * same size and same token texts).  progress gets the running mean KLD. */
em_status em_eval_kld(const em_model *base, const em_model *model, const em_token *tokens, int32_t n_tokens,
                      const em_ppl_params *p, em_eval_progress_fn progress, void *user, em_kld_result *out);

/* Fails with a clear message unless a and b have the same vocabulary. */
em_status em_eval_same_vocab(const em_model *a, const em_model *b);

/* ---------------------------------------- log-likelihood scoring (mc.c) */

/* One candidate sequence: a context and its continuation, as tokens. */
typedef struct em_choice_seq {
    const em_token *tokens; /* [n_tokens] context tokens, then continuation   */
    int32_t n_tokens;
    int32_t cont_start;     /* index of the first continuation token, >= 1    */
} em_choice_seq;

typedef struct em_choice_score {
    double loglik;   /* sum of log p over the continuation tokens, nats       */
    int32_t n_cont;  /* continuation tokens scored                            */
    bool greedy;     /* every continuation token was the argmax               */
} em_choice_score;

/*
 * Scores k sequences in e's context.  The longest common token prefix of
 * all of them (stopping before any continuation's first prediction) is
 * decoded once in sequence 0 and shared with sequences 1..k through
 * em_kv_seq_cp; every choice's remaining rows then go through em_decode
 * together (split only where n_batch or n_seq_max demand).  The cache is
 * empty again on return.  Needs e->n_seq_max >= 2.
 */
em_status em_eval_score_choices(em_eval_engine *e, const em_choice_seq *seqs, int32_t k, em_choice_score *out);

/* KV cache positions em_eval_score_choices needs for these sequences,
 * counted in whole cache blocks. */
int32_t em_eval_choices_cells(const em_choice_seq *seqs, int32_t k);

/* ------------------------------------------------------- benchmarks */

typedef enum em_mc_task {
    EM_TASK_ARC_EASY,
    EM_TASK_ARC_CHALLENGE,
    EM_TASK_PIQA,
    EM_TASK_WINOGRANDE,
    EM_TASK_HELLASWAG,
    EM_TASK_LAMBADA,
    EM_TASK_COUNT
} em_mc_task;

/* "arc_easy", ...; NULL for an unknown id. */
const char *em_mc_task_name(em_mc_task t);
/* Accepts the names above (and "lambada_openai" for lambada). */
bool em_mc_task_parse(const char *name, em_mc_task *out);
/* The data file's name under $EMBER_TEST_DATA/evals ("arc_easy.jsonl"). */
const char *em_mc_task_file(em_mc_task t);
/* True when the task reports acc_norm (arc, piqa, hellaswag). */
bool em_mc_task_has_norm(em_mc_task t);

/* One item as text: choice i is context[i] followed by continuation[i]. */
typedef struct em_mc_item {
    int32_t n_choices;
    char **context;       /* [n_choices] prompt text of each choice           */
    char **continuation;  /* [n_choices] scored text, with its leading space  */
    int32_t *norm_len;    /* [n_choices] characters of the choice (acc_norm)  */
    int32_t gold;         /* index of the right choice; 0 for lambada         */
    int32_t line;         /* line of the data file it came from               */
} em_mc_item;

typedef struct em_mc_data {
    em_mc_task task;
    em_mc_item *items;    /* [n_items] in file order                          */
    int32_t n_items;
} em_mc_data;

/* Reads the first `limit` items (limit <= 0: all) of a JSON-lines file in
 * the task's format; a malformed line fails with its line number. */
em_status em_mc_data_load(em_mc_data *d, em_mc_task task, const char *path, int32_t limit);
/* The same from a buffer already in memory (name is used in messages). */
em_status em_mc_data_parse(em_mc_data *d, em_mc_task task, const char *text, size_t len, const char *name,
                           int32_t limit);
void em_mc_data_free(em_mc_data *d);

typedef struct em_mc_params {
    int32_t n_ctx;      /* longest sequence allowed; 0: the model's training context */
    int32_t n_batch;    /* rows per em_decode; 0: 512                              */
    int32_t n_threads;  /* 0: physical cores                                       */
    em_type kv_type;
} em_mc_params;

em_mc_params em_mc_default_params(void);

typedef struct em_mc_result {
    em_mc_task task;
    int32_t n;               /* items scored                                     */
    double acc, acc_se;      /* accuracy (lambada: greedy last-word match)       */
    double acc_norm, acc_norm_se; /* length-normalised accuracy; < 0: n/a        */
    double ppl, ppl_se;      /* lambada: exp(-mean continuation loglik); else 0  */
    double seconds;
} em_mc_result;

/* Scores every item of data; progress gets the running accuracy. */
em_status em_eval_mc(const em_model *model, const em_mc_data *data, const em_mc_params *p,
                     em_eval_progress_fn progress, void *user, em_mc_result *out);

/* -------------------------------------------------- records and report */

/* Everything known about one model file: what it is, how good (any of
 * perplexity, benchmark scores, KL divergence) and how fast.  The same
 * record is what `--json` writes, what `report --results` reads (also
 * from an earlier report.json), and one entry of report.json. */
typedef struct em_eval_record {
    char model[512];        /* path as given                                     */
    char desc[128];         /* em_model_desc ("llama 260K F32")                   */
    char arch[32];
    uint64_t model_bytes;   /* bytes of tensor data                              */
    uint64_t n_params;
    uint64_t kv_bytes_per_pos; /* F16 K and V bytes of one cached position       */

    bool has_ppl;
    double ppl, ppl_se;
    int32_t ppl_ctx, ppl_chunks;
    char ppl_text[512];     /* text file the perplexity was measured on          */

    bool has_task[EM_TASK_COUNT];
    em_mc_result task[EM_TASK_COUNT];

    bool has_kld;
    char kld_base[512];
    em_kld_result kld;

    bool has_speed;
    double tg_tok_s;        /* generation tokens per second                      */
    double pp_tok_s;        /* prompt tokens per second                          */
    double tg_roofline;     /* share of the read-bandwidth ceiling tg reached    */
    int32_t bench_threads;
} em_eval_record;

/* Fills the descriptive fields of r from a loaded model. */
void em_eval_record_describe(em_eval_record *r, const em_model *model, const char *path);

/* Copies into dst every measurement src has (same model assumed). */
void em_eval_record_merge(em_eval_record *dst, const em_eval_record *src);

/* Writes r as one JSON object to path. */
em_status em_eval_record_save(const em_eval_record *r, const char *path);
/* Reads the records of a file: one from a file em_eval_record_save wrote,
 * or every entry of a report's JSON.  *out is a heap array of *n records
 * (free() it). */
em_status em_eval_records_load(const char *path, em_eval_record **out, int32_t *n);

typedef enum em_quality_metric {
    EM_QUALITY_AUTO,     /* mean accuracy when any task ran, else perplexity */
    EM_QUALITY_ACC,      /* mean of the tasks' acc (higher is better)        */
    EM_QUALITY_PPL       /* perplexity (lower is better)                      */
} em_quality_metric;

typedef struct em_report_params {
    double price_per_hour;   /* USD per hour of this machine; 0: cost in ms/token */
    int32_t kv_ctx;          /* positions the memory column counts KV for         */
    em_quality_metric quality;
} em_report_params;

/* Per-record figures the report derives (exposed for tests and JSON). */
typedef struct em_report_point {
    bool has_quality, has_cost;
    double quality;          /* value on the chart's quality axis                */
    double cost;             /* $/1M tokens, or ms per token without a price     */
    double memory_bytes;     /* model bytes + KV at kv_ctx positions             */
    bool pareto;             /* on the front: no other point is cheaper-or-equal
                                and better-or-equal with one strict             */
} em_report_point;

/* Resolves EM_QUALITY_AUTO against the records. */
em_quality_metric em_report_metric(const em_eval_record *recs, int32_t n, em_quality_metric want);

/* Computes quality, cost, memory and the Pareto front for n records. */
void em_report_points(const em_eval_record *recs, int32_t n, const em_report_params *p, em_report_point *pts);

/* Writes report.html at html_path and the same data as JSON at
 * json_path. */
em_status em_report_write(const em_eval_record *recs, int32_t n, const em_report_params *p,
                          const char *html_path, const char *json_path);

#endif /* EM_EVAL_H */

/*
 * gguf.h - reading and writing GGUF files (versions 2 and 3).
 *
 * The reader maps the file and validates everything before use: every
 * count, string length, array length, tensor shape, type and offset is
 * checked against the file's size, so a truncated or hostile file yields
 * EM_ERR_FORMAT with a one-line message and never an out-of-bounds read.
 * Tensor data is not copied: em_gguf_tensor.data points into the mapping,
 * valid until em_gguf_close.
 *
 * The writer collects metadata and tensors in memory and writes a v3 file
 * with the requested alignment; ember's tests and quantizer use it.
 */
#ifndef EM_GGUF_H
#define EM_GGUF_H

#include "core/core.h"

#define EM_GGUF_MAX_DIMS 4
#define EM_GGUF_DEFAULT_ALIGNMENT 32
/* Arrays may hold arrays; the reader refuses nesting deeper than this many
 * levels (a top-level array is level 1) so that a hostile file cannot
 * exhaust the stack. */
#define EM_GGUF_MAX_DEPTH 8

typedef enum em_gguf_type {
    EM_GGUF_UINT8 = 0,
    EM_GGUF_INT8 = 1,
    EM_GGUF_UINT16 = 2,
    EM_GGUF_INT16 = 3,
    EM_GGUF_UINT32 = 4,
    EM_GGUF_INT32 = 5,
    EM_GGUF_FLOAT32 = 6,
    EM_GGUF_BOOL = 7,
    EM_GGUF_STRING = 8,
    EM_GGUF_ARRAY = 9,
    EM_GGUF_UINT64 = 10,
    EM_GGUF_INT64 = 11,
    EM_GGUF_FLOAT64 = 12,
    EM_GGUF_TYPE_COUNT = 13
} em_gguf_type;

/* A string inside the mapping: NOT NUL-terminated. */
typedef struct em_gguf_str {
    const char *ptr;
    uint64_t len;
} em_gguf_str;

typedef struct em_gguf_tensor {
    em_gguf_str name;
    em_type type;
    uint32_t n_dims;
    int64_t ne[EM_GGUF_MAX_DIMS]; /* elements per dim, ne[0] innermost; unused dims are 1 */
    uint64_t offset;              /* bytes from the start of the data section */
    uint64_t size;                /* bytes of data (row size * rows)          */
    const void *data;             /* points into the mapping                  */
} em_gguf_tensor;

typedef struct em_gguf em_gguf;

/* Opens and validates a file; the mapping lives until em_gguf_close. */
em_status em_gguf_open(em_gguf **out, const char *path);
/* Same, but the file is read into anonymous memory (huge pages where the
 * kernel gives them) instead of being mapped: it costs the copy and the
 * memory, and the weights can then not be dropped from memory and read
 * back from disk while the reader lives. */
em_status em_gguf_open_read(em_gguf **out, const char *path);
/* Locks the reader's bytes in memory (mlock) until em_gguf_close.  Fails
 * with EM_ERR_IO, changing nothing, when the limit on locked memory is too
 * low.  A reader over a caller's buffer is left as it is. */
em_status em_gguf_lock(em_gguf *g);
/* Same over a caller's buffer (not copied; must outlive the reader). */
em_status em_gguf_open_memory(em_gguf **out, const void *data, size_t size);
void em_gguf_close(em_gguf *g);
/* Split models (llama.cpp's gguf-split writes PREFIX-00001-of-00003.gguf
 * and so on, each part with split.no, split.count and split.tensors.count):
 * when g, opened from path, is the first of several parts, opens the others
 * next to it (mapped, or read when map is false) and adds their tensors to
 * g, so that tensor lookups see the whole model.  Metadata is the first
 * part's; a tensor's offset is relative to its own part's data section.
 * The parts close with g.  Does nothing for a file that is not split;
 * fails when a part is missing, out of place, or the tensor count differs. */
em_status em_gguf_open_parts(em_gguf *g, const char *path, bool map);

uint32_t em_gguf_version(const em_gguf *g);
uint32_t em_gguf_alignment(const em_gguf *g);
uint64_t em_gguf_data_offset(const em_gguf *g); /* file offset of tensor data */
uint64_t em_gguf_file_size(const em_gguf *g);

/* ---- metadata: keys are indexed 0..n_kv-1 in file order ---- */
int64_t em_gguf_n_kv(const em_gguf *g);
em_gguf_str em_gguf_key(const em_gguf *g, int64_t i);
/* Index of a key, -1 when absent. */
int64_t em_gguf_find_key(const em_gguf *g, const char *key);
em_gguf_type em_gguf_kv_type(const em_gguf *g, int64_t i);

/* Typed reads of a scalar by key.  Integers convert between widths when the
 * value fits; floats accept float32/float64.  Return EM_ERR_NOT_FOUND when
 * the key is absent and EM_ERR_FORMAT when the type does not match. */
em_status em_gguf_get_i64(const em_gguf *g, const char *key, int64_t *out);
em_status em_gguf_get_u32(const em_gguf *g, const char *key, uint32_t *out);
em_status em_gguf_get_f32(const em_gguf *g, const char *key, float *out);
em_status em_gguf_get_bool(const em_gguf *g, const char *key, bool *out);
em_status em_gguf_get_str(const em_gguf *g, const char *key, em_gguf_str *out);

/* Arrays.  em_gguf_get_arr gives the element type and count; elements of
 * fixed-size types are in *data (little-endian, unaligned: use memcpy);
 * string arrays are read with em_gguf_arr_str; nested arrays with
 * em_gguf_arr_nested. */
em_status em_gguf_get_arr(const em_gguf *g, const char *key,
                          em_gguf_type *elem_type, uint64_t *n,
                          const void **data);
em_status em_gguf_arr_str(const em_gguf *g, const char *key, uint64_t i,
                          em_gguf_str *out);

/* Generic value access for dumping: the value at key index i.  For a
 * scalar, *raw points to its bytes.  For an array see em_gguf_kv_arr. */
const void *em_gguf_kv_raw(const em_gguf *g, int64_t i);
em_status em_gguf_kv_arr(const em_gguf *g, int64_t i, em_gguf_type *elem_type,
                         uint64_t *n);
/* Formats value i as text (arrays shortened to max_elems elements,
 * max_elems < 0 shows all), NUL-terminated; returns the length written.
 * Strings are quoted with escapes; a value cut by the buffer ends "...". */
size_t em_gguf_kv_format(const em_gguf *g, int64_t i, char *buf, size_t size,
                         int max_elems);
/* Bytes of value i's encoding as stored in the file, starting at
 * em_gguf_kv_raw (for a string that is its 8-byte length and text, for an
 * array its element type, count and elements); the writer copies keys
 * with it. */
uint64_t em_gguf_kv_raw_size(const em_gguf *g, int64_t i);

/* ---- tensors ---- */
int64_t em_gguf_n_tensors(const em_gguf *g);
const em_gguf_tensor *em_gguf_tensor_at(const em_gguf *g, int64_t i);
/* NULL when absent. */
const em_gguf_tensor *em_gguf_find_tensor(const em_gguf *g, const char *name);

/* Compares a mapped string with a C string. */
bool em_gguf_str_eq(em_gguf_str s, const char *c);

/* Short name of a value type ("u32", "str", "arr"), "?" when unknown. */
const char *em_gguf_type_name(em_gguf_type t);

/* Bytes of one element of a fixed-size value type; 0 for STRING, ARRAY and
 * unknown types. */
size_t em_gguf_type_size(em_gguf_type t);

/* ---- nested arrays ----
 * A view of one array inside the mapping.  For fixed-size element types
 * data holds n little-endian elements back to back (unaligned: use
 * memcpy); for STRING and ARRAY elements it points at the first element's
 * encoding and the accessors below decode it.  Views come from the reader
 * and are only valid while it is open. */
typedef struct em_gguf_arr {
    em_gguf_type elem_type;
    uint64_t n;       /* number of elements */
    const void *data; /* first element, inside the mapping */
} em_gguf_arr;

/* The array stored at key index i (EM_ERR_FORMAT when it is no array). */
em_status em_gguf_kv_arr_view(const em_gguf *g, int64_t i, em_gguf_arr *out);
/* Element i of the array at key, when that array holds arrays: O(1). */
em_status em_gguf_arr_nested(const em_gguf *g, const char *key, uint64_t i,
                             em_gguf_arr *out);
/* Element i of any array view holding arrays / strings.  These walk the
 * elements before i, so they cost O(i); the top-level accessors
 * em_gguf_arr_nested and em_gguf_arr_str are O(1). */
em_status em_gguf_arr_get_arr(const em_gguf_arr *a, uint64_t i,
                              em_gguf_arr *out);
em_status em_gguf_arr_get_str(const em_gguf_arr *a, uint64_t i,
                              em_gguf_str *out);

/* ------------------------------------------------------------- writer */

typedef struct em_gguf_writer em_gguf_writer;

em_status em_gguf_writer_init(em_gguf_writer **out);
void em_gguf_writer_free(em_gguf_writer *w);
void em_gguf_writer_set_alignment(em_gguf_writer *w, uint32_t alignment);

/* Each setter copies its arguments; setting a key twice replaces it. */
em_status em_gguf_set_u8(em_gguf_writer *w, const char *key, uint8_t v);
em_status em_gguf_set_i32(em_gguf_writer *w, const char *key, int32_t v);
em_status em_gguf_set_u32(em_gguf_writer *w, const char *key, uint32_t v);
em_status em_gguf_set_u64(em_gguf_writer *w, const char *key, uint64_t v);
em_status em_gguf_set_f32(em_gguf_writer *w, const char *key, float v);
em_status em_gguf_set_bool(em_gguf_writer *w, const char *key, bool v);
em_status em_gguf_set_str(em_gguf_writer *w, const char *key, const char *v);
/* An array of fixed-size elements (not STRING/ARRAY), n elements. */
em_status em_gguf_set_arr(em_gguf_writer *w, const char *key,
                          em_gguf_type elem_type, const void *data, uint64_t n);
em_status em_gguf_set_arr_str(em_gguf_writer *w, const char *key,
                              const char *const *strs, uint64_t n);
/* The remaining scalar types, so that every GGUF value type can be written. */
em_status em_gguf_set_i8(em_gguf_writer *w, const char *key, int8_t v);
em_status em_gguf_set_u16(em_gguf_writer *w, const char *key, uint16_t v);
em_status em_gguf_set_i16(em_gguf_writer *w, const char *key, int16_t v);
em_status em_gguf_set_i64(em_gguf_writer *w, const char *key, int64_t v);
em_status em_gguf_set_f64(em_gguf_writer *w, const char *key, double v);
/* An array of n arrays; each arrs[k] has a fixed-size elem_type and its
 * data holds arrs[k].n elements. */
em_status em_gguf_set_arr_nested(em_gguf_writer *w, const char *key,
                                 const em_gguf_arr *arrs, uint64_t n);
/* Copies every key of a reader except those the writer already has. */
em_status em_gguf_copy_kv(em_gguf_writer *w, const em_gguf *src);

/* Adds a tensor; data (em_row_size(type, ne[0]) * rows bytes) is copied. */
em_status em_gguf_add_tensor(em_gguf_writer *w, const char *name, em_type type,
                             uint32_t n_dims, const int64_t *ne,
                             const void *data);

/* Writes the whole file (GGUF v3). */
em_status em_gguf_write(const em_gguf_writer *w, const char *path);
/* Same into a heap buffer (*out, *size bytes; the caller frees it). */
em_status em_gguf_write_memory(const em_gguf_writer *w, void **out,
                               size_t *size);

#endif /* EM_GGUF_H */

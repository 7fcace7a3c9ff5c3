/*
 * test_grammar.c - constrained decoding: JSON schemas compiled to grammars,
 * the parser over bytes, and token masks over real vocabularies.
 *
 *  - Compiling: good schemas compile; bad ones fail with the right status
 *    and a message that names the keyword.
 *  - Bytes: texts that validate are accepted and complete; texts that do
 *    not are refused somewhere (or are not complete at the end).
 *  - Generation (with $EMBER_TEST_DATA): for each schema and each of
 *    stories260K's 512-token SentencePiece vocabulary, GPT-2's 50K BPE
 *    vocabulary and Llama 3.2's 128K BPE vocabulary, random logits (fixed
 *    seed) are masked and sampled until the grammar is done; the text must
 *    parse with jansson and validate against the schema (a small validator
 *    for the supported subset, with PCRE2 for patterns and formats).
 *  - Timing (printed, not asserted): trie build and mean mask time per
 *    token for Llama 3.2's vocabulary.
 */
#include "ember.h"
#include "gguf/gguf.h"
#include "sample/grammar.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ compiling */

static em_status compile(const char *schema, em_grammar **g) {
    *g = NULL;
    return em_grammar_compile_json_schema(g, schema, strlen(schema));
}

static void expect_ok(const char *schema) {
    em_grammar *g;
    em_status st = compile(schema, &g);
    CHECK_MSG(st == EM_OK, "%s: %s", schema, em_last_error());
    em_grammar_free(g);
}

static void expect_err(const char *schema, em_status want, const char *needle) {
    em_grammar *g;
    em_status st = compile(schema, &g);
    CHECK_MSG(st == want && g == NULL, "%.100s: got %s (%s), want %s", schema, em_status_str(st),
              st ? em_last_error() : "", em_status_str(want));
    CHECK_MSG(strstr(em_last_error(), needle) != NULL, "%.100s: message '%s' lacks '%s'", schema,
              em_last_error(), needle);
    em_grammar_free(g);
}

static void test_compile(void) {
    expect_ok("{}");
    expect_ok("true");
    expect_ok("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"],"
              "\"additionalProperties\":false,\"title\":\"T\",\"description\":\"d\",\"x-foo\":1}");
    expect_ok("{\"type\":[\"string\",\"null\"]}");
    expect_ok("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"next\":{\"anyOf\":[{\"$ref\":"
              "\"#/$defs/n\"},{\"type\":\"null\"}]}}}},\"$ref\":\"#/$defs/n\"}");
    expect_ok("{\"definitions\":{\"a\":{\"type\":\"integer\"}},\"type\":\"array\",\"items\":{\"$ref\":"
              "\"#/definitions/a\"},\"minItems\":1,\"maxItems\":3}");
    expect_ok("{\"type\":\"string\",\"pattern\":\"^[A-Z][a-z]+(-[0-9]{2,4})?$\"}");
    expect_ok("{\"type\":\"string\",\"format\":\"date-time\"}");
    expect_ok("{\"enum\":[\"a\",1,null,true,{\"x\":[1,2]}]}");
    expect_ok("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"boolean\"}],\"nullable\":true}");
    expect_ok("{\"allOf\":[{\"type\":\"string\"}],\"description\":\"x\"}");

    expect_err("{\"type\":", EM_ERR_FORMAT, "not JSON");
    expect_err("[1]", EM_ERR_INVALID_ARG, "must be an object");
    expect_err("false", EM_ERR_UNSUPPORTED, "matches nothing");
    expect_err("{\"type\":\"strin\"}", EM_ERR_INVALID_ARG, "'strin'");
    expect_err("{\"not\":{}}", EM_ERR_UNSUPPORTED, "'not'");
    expect_err("{\"type\":\"object\",\"properties\":{\"a\":{\"if\":{}}}}", EM_ERR_UNSUPPORTED,
               "'if' at /properties/a");
    expect_err("{\"type\":\"object\",\"patternProperties\":{}}", EM_ERR_UNSUPPORTED,
               "'patternProperties'");
    expect_err("{\"type\":\"array\",\"uniqueItems\":true}", EM_ERR_UNSUPPORTED, "'uniqueItems'");
    expect_err("{\"type\":\"array\",\"prefixItems\":{}}", EM_ERR_INVALID_ARG, "'prefixItems'");
    expect_err("{\"prefixItems\":[{}],\"items\":false,\"minItems\":2}", EM_ERR_INVALID_ARG,
               "beyond prefixItems");
    expect_err("{\"prefixItems\":[{\"not\":1}]}", EM_ERR_UNSUPPORTED, "/prefixItems/0");
    expect_err("{\"type\":\"array\",\"contains\":{}}", EM_ERR_UNSUPPORTED, "'contains'");
    expect_err("{\"type\":\"number\",\"multipleOf\":2}", EM_ERR_UNSUPPORTED, "'multipleOf'");
    expect_err("{\"type\":\"object\",\"minProperties\":1}", EM_ERR_UNSUPPORTED, "'minProperties'");
    expect_err("{\"type\":\"object\",\"propertyNames\":{}}", EM_ERR_UNSUPPORTED, "'propertyNames'");
    expect_err("{\"type\":\"object\",\"dependentRequired\":{}}", EM_ERR_UNSUPPORTED,
               "'dependentRequired'");
    expect_err("{\"type\":\"string\",\"format\":\"email\"}", EM_ERR_UNSUPPORTED, "'email'");
    expect_err("{\"type\":\"string\",\"pattern\":\"a(?=b)\"}", EM_ERR_UNSUPPORTED, "lookaround");
    expect_err("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", EM_ERR_UNSUPPORTED, "\\1");
    expect_err("{\"type\":\"string\",\"pattern\":\"a\\\\bc\"}", EM_ERR_UNSUPPORTED, "\\b");
    expect_err("{\"type\":\"string\",\"pattern\":\"(a*)*\"}", EM_ERR_UNSUPPORTED, "empty string");
    expect_err("{\"type\":\"string\",\"pattern\":\"a^b\"}", EM_ERR_UNSUPPORTED, "anchors");
    expect_err("{\"type\":\"string\",\"pattern\":\"[\\u00e0-\\u00ff]\"}", EM_ERR_UNSUPPORTED,
               "beyond ASCII");
    expect_err("{\"type\":\"string\",\"pattern\":\"(ab\"}", EM_ERR_UNSUPPORTED, "unclosed");
    expect_err("{\"type\":\"string\",\"pattern\":\"x\",\"maxLength\":3}", EM_ERR_UNSUPPORTED,
               "only one of");
    expect_err("{\"$ref\":\"http://example.com/s.json\"}", EM_ERR_UNSUPPORTED, "local");
    expect_err("{\"$ref\":\"#/$defs/missing\"}", EM_ERR_INVALID_ARG, "resolves to nothing");
    expect_err("{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"},{\"type\":\"null\"}]}},"
               "\"$ref\":\"#/$defs/a\"}", EM_ERR_UNSUPPORTED, "left recursion");
    expect_err("{\"type\":\"array\",\"items\":[{}]}", EM_ERR_UNSUPPORTED, "tuples");
    expect_err("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", EM_ERR_INVALID_ARG,
               "minItems > maxItems");
    expect_err("{\"type\":\"array\",\"minItems\":-1}", EM_ERR_INVALID_ARG, "'minItems'");
    expect_err("{\"type\":\"string\",\"maxLength\":100000}", EM_ERR_UNSUPPORTED, "repetition");
    expect_err("{\"type\":\"object\",\"properties\":{},\"required\":[\"a\"]}", EM_ERR_INVALID_ARG,
               "'a'");
    expect_err("{\"enum\":[]}", EM_ERR_INVALID_ARG, "'enum'");
    expect_err("{\"properties\":{\"a\":false},\"required\":[\"a\"]}", EM_ERR_UNSUPPORTED,
               "matches nothing at /properties/a");
    expect_err("{\"anyOf\":[]}", EM_ERR_INVALID_ARG, "'anyOf'");
    expect_err("{\"allOf\":[{\"type\":\"string\"},{\"minLength\":2}]}", EM_ERR_UNSUPPORTED,
               "'allOf'");

    /* Deep nesting is refused, not a stack overflow. */
    char deep[8192];
    size_t n = 0;
    for (int i = 0; i < 400; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"items\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{}");
    for (int i = 0; i < 400; i++) deep[n++] = '}';
    deep[n] = '\0';
    expect_err(deep, EM_ERR_UNSUPPORTED, "nested");

    em_grammar *g = NULL;
    CHECK_OK(em_grammar_compile_json_object(&g));
    int32_t n_rules = 0, n_el = 0;
    em_grammar_size(g, &n_rules, &n_el);
    CHECK(n_rules > 10 && n_el > n_rules);
    em_grammar_free(g);
}

/* ---------------------------------------------------------------- bytes */

typedef struct byte_case {
    const char *schema; /* NULL: json_object */
    const char *text;
    bool valid;
} byte_case;

static const byte_case byte_cases[] = {
    {NULL, "{}", true},
    {NULL, "{\"a\": [1, -2.5e3, \"x\\n\\u00e9\\\"\", true, null, {\"b\": {}}]}", true},
    {NULL, "{\n  \"a\": 1,\n  \"b\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"\n}", true},
    {NULL, "[]", false},
    {NULL, "{\"a\":01}", false},
    {NULL, "{\"a\":1,}", false},
    {NULL, "{\"a\":\"\x01\"}", false},
    {NULL, "{\"a\":\"\\ud800\"}", false},
    {NULL, "{\"a\":\"\xc0\xaf\"}", false},   /* overlong UTF-8 */
    {NULL, "{\"a\":\"\xed\xa0\x80\"}", false}, /* a UTF-8 surrogate */
    {NULL, "{  \"a\":1}", false},               /* two spaces */
    {NULL, "{\"a\":1} ", false},                /* text after the end */
    {NULL, "{\"a\":1e999}", false},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
     "\"required\":[\"b\"]}", "{\"a\": 3, \"b\": \"x\"}", true},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
     "\"required\":[\"b\"]}", "{\"b\": \"x\"}", true},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
     "\"required\":[\"b\"]}", "{\"a\": 3}", false},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
     "\"required\":[\"b\"]}", "{\"b\": \"x\", \"a\": 3}", false},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}", "{}", true},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}", "{\"c\":1}", false},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":"
     "{\"type\":\"boolean\"}}", "{\"a\":1,\"c\":true,\"d\":false}", true},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":"
     "{\"type\":\"boolean\"}}", "{\"c\":1}", false},
    {"{\"type\":\"object\"}", "{\"anything\": [1, {}]}", true},
    {"{\"properties\":{\"a\":false,\"b\":true}}", "{\"b\":[]}", true},
    {"{\"properties\":{\"a\":false,\"b\":true}}", "{\"a\":1}", false},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1]", false},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1, 2]", true},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1,2,3]", true},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1,2,3,4]", false},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}", "[1,2.5]", false},
#define TUPLE "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\"}],"
    {TUPLE "\"items\":false}", "[1, \"a\"]", true},
    {TUPLE "\"items\":false}", "[1]", true},
    {TUPLE "\"items\":false}", "[]", true},
    {TUPLE "\"items\":false}", "[1,\"a\",2]", false},
    {TUPLE "\"items\":false}", "[\"a\"]", false},
    {TUPLE "\"items\":false,\"minItems\":2}", "[1]", false},
    {TUPLE "\"items\":{\"type\":\"boolean\"}}", "[1,\"a\",true,false]", true},
    {TUPLE "\"items\":{\"type\":\"boolean\"}}", "[1,\"a\",3]", false},
    {TUPLE "\"items\":{\"type\":\"boolean\"},\"maxItems\":3}", "[1,\"a\",true,false]", false},
    {TUPLE "\"maxItems\":1}", "[1,\"a\"]", false},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"\xc3\xa9\xc3\xa9\"", true},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"a\"", false},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"a\\\"bc\"", false},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"a\\\"b\"", true},
    {"{\"enum\":[\"red\",\"green\",0.1]}", "\"green\"", true},
    {"{\"enum\":[\"red\",\"green\",0.1]}", "0.1", true},
    {"{\"enum\":[\"red\",\"green\",0.1]}", "\"blue\"", false},
    {"{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2]}", true},
    {"{\"type\":\"string\",\"enum\":[\"a\",1]}", "\"a\"", true},
    {"{\"type\":\"string\",\"enum\":[\"a\",1]}", "1", false},
    {"{\"type\":[\"integer\",\"null\"]}", "null", true},
    {"{\"type\":[\"integer\",\"null\"]}", "-12", true},
    {"{\"type\":[\"integer\",\"null\"]}", "1.5", false},
    {"{\"type\":\"integer\",\"minimum\":0}", "-1", false},
    {"{\"type\":\"number\"}", "-0.25E+12", true},
    {"{\"type\":\"number\"}", ".5", false},
    {"{\"type\":\"boolean\",\"nullable\":true}", "null", true},
    {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-29\"", true},
    {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-13-01\"", false},
    {"{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-02-29T23:59:07.5+01:00\"", true},
    {"{\"type\":\"string\",\"format\":\"time\"}", "\"24:00:00Z\"", false},
    {"{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567-e89b-12d3-a456-426614174000\"", true},
    {"{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567-e89b-12d3-a456-42661417400\"", false},
    {"{\"type\":\"string\",\"pattern\":\"^[A-Z][a-z]+(-[0-9]{2,4})?$\"}", "\"Abc-123\"", true},
    {"{\"type\":\"string\",\"pattern\":\"^[A-Z][a-z]+(-[0-9]{2,4})?$\"}", "\"Abc-1\"", false},
    {"{\"type\":\"string\",\"pattern\":\"^[A-Z][a-z]+(-[0-9]{2,4})?$\"}", "\"abc\"", false},
    {"{\"type\":\"string\",\"pattern\":\"b+c\"}", "\"aabbbcdd\"", true},
    {"{\"type\":\"string\",\"pattern\":\"b+c\"}", "\"aabd\"", false},
    {"{\"type\":\"string\",\"pattern\":\"^\\\\d{3}[\\\"\\\\\\\\]\\\\s$\"}", "\"123\\\"\\n\"", true},
    {"{\"type\":\"string\",\"pattern\":\"^\\\\d{3}[\\\"\\\\\\\\]\\\\s$\"}", "\"123\\\\\\t\"", true},
    {"{\"type\":\"string\",\"pattern\":\"^[^a-z]+$\"}", "\"\xc3\xa9X\"", true},
    {"{\"type\":\"string\",\"pattern\":\"^[^a-z]+$\"}", "\"Xy\"", false},
    {"{\"type\":\"string\",\"pattern\":\"^(?:cat|dog)s?$\"}", "\"dogs\"", true},
    {"{\"type\":\"string\",\"pattern\":\"^(?:cat|dog)s?$\"}", "\"cow\"", false},
    {"{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":"
     "[{\"$ref\":\"#/$defs/n\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/n\"}",
     "{\"v\":1,\"next\":{\"v\":2,\"next\":{\"v\":3,\"next\":null}}}", true},
    {"{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":"
     "[{\"$ref\":\"#/$defs/n\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/n\"}",
     "{\"v\":1,\"next\":{\"v\":2}}", false},
    {"{\"anyOf\":[{\"type\":\"string\",\"maxLength\":1},{\"type\":\"string\",\"pattern\":\"^ab$\"}]}",
     "\"ab\"", true},
};

/* Follows text byte by byte (1) or in one call (0); returns whether it
 * is a complete sentence. */
static bool run_bytes(const em_grammar *g, const char *text, bool bytewise) {
    em_grammar_state *s = NULL;
    if (em_grammar_state_init(&s, g, NULL) != EM_OK) return false;
    bool ok = true;
    size_t n = strlen(text);
    if (bytewise) {
        for (size_t i = 0; i < n && ok; i++) ok = em_grammar_accept_bytes(s, text + i, 1) == EM_OK;
    } else {
        ok = em_grammar_accept_bytes(s, text, n) == EM_OK;
    }
    ok = ok && em_grammar_can_end(s);
    em_grammar_state_free(s);
    return ok;
}

static void test_bytes(void) {
    for (size_t i = 0; i < sizeof byte_cases / sizeof byte_cases[0]; i++) {
        const byte_case *c = &byte_cases[i];
        em_grammar *g = NULL;
        em_status st = c->schema ? compile(c->schema, &g) : em_grammar_compile_json_object(&g);
        CHECK_MSG(st == EM_OK, "case %zu: %s", i, em_last_error());
        if (st != EM_OK) continue;
        bool a = run_bytes(g, c->text, false), b = run_bytes(g, c->text, true);
        CHECK_MSG(a == c->valid && b == c->valid, "case %zu: '%s' on %s: got %d/%d, want %d", i,
                  c->text, c->schema ? c->schema : "json_object", a, b, c->valid);
        em_grammar_free(g);
    }
    /* A refused byte leaves the state as it was. */
    em_grammar *g = NULL;
    CHECK_OK(em_grammar_compile_json_object(&g));
    em_grammar_state *s = NULL;
    CHECK_OK(em_grammar_state_init(&s, g, NULL));
    CHECK_OK(em_grammar_accept_bytes(s, "{\"a\"", 4));
    CHECK(em_grammar_accept_bytes(s, "}", 1) == EM_ERR_INVALID_ARG);
    CHECK_OK(em_grammar_accept_bytes(s, ":1", 2));
    CHECK(!em_grammar_can_end(s) && !em_grammar_done(s));
    CHECK_OK(em_grammar_accept_bytes(s, "}", 1));
    CHECK(em_grammar_can_end(s) && em_grammar_done(s));
    CHECK(em_grammar_accept_bytes(s, " ", 1) == EM_ERR_INVALID_ARG);
    float logit = 0;
    CHECK(em_grammar_mask(s, &logit) == EM_ERR_INVALID_ARG); /* no vocabulary */
    em_grammar_state_free(s);
    em_grammar_free(g);
}

/* ------------------------------------------------------- integer ranges */

static void test_integer_ranges(void) {
    static const struct {
        const char *bounds; /* JSON members added to {"type":"integer"} */
        long long lo, hi;
    } cases[] = {
        {"\"minimum\":0,\"maximum\":150", 0, 150},
        {"\"minimum\":-20,\"maximum\":7", -20, 7},
        {"\"minimum\":13,\"maximum\":13", 13, 13},
        {"\"minimum\":-999,\"maximum\":-100", -999, -100},
        {"\"minimum\":5", 5, 9999999999999999LL},
        {"\"maximum\":-3", -9999999999999999LL, -3},
        {"\"exclusiveMinimum\":0.5,\"exclusiveMaximum\":100000", 1, 99999},
        {"\"minimum\":-1.5,\"maximum\":2.5", -1, 2},
        {"\"minimum\":10,\"exclusiveMinimum\":true,\"maximum\":20,\"exclusiveMaximum\":true", 11, 19},
        {"\"minimum\":1000000000000", 1000000000000LL, 9999999999999999LL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char schema[256];
        snprintf(schema, sizeof schema, "{\"type\":\"integer\",%s}", cases[k].bounds);
        em_grammar *g = NULL;
        CHECK_OK(compile(schema, &g));
        if (!g) continue;
        long long probes[64];
        int n_probes = 0;
        for (int d = -25; d <= 25; d += 5) {
            probes[n_probes++] = cases[k].lo + d;
            probes[n_probes++] = cases[k].hi + d;
        }
        long long extra[] = {0, -1, 1, 10, 99, 100, 101, 1000, -1000, 123456789012LL, -987654321LL,
                             9999999999999999LL, -9999999999999999LL};
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) probes[n_probes++] = extra[i];
        for (int i = 0; i < n_probes; i++) {
            long long v = probes[i];
            if (v > 9999999999999999LL || v < -9999999999999999LL) continue;
            char text[32];
            snprintf(text, sizeof text, "%lld", v);
            bool want = v >= cases[k].lo && v <= cases[k].hi;
            CHECK_MSG(run_bytes(g, text, false) == want, "%s: %s should be %s", schema, text,
                      want ? "accepted" : "refused");
        }
        CHECK(!run_bytes(g, "-0", false) && !run_bytes(g, "013", false));
        em_grammar_free(g);
    }
    em_grammar *g = NULL;
    CHECK(compile("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", &g) == EM_ERR_UNSUPPORTED);
    CHECK(compile("{\"type\":\"integer\",\"minimum\":1e17}", &g) == EM_ERR_UNSUPPORTED);
    CHECK(compile("{\"type\":\"integer\",\"minimum\":\"3\"}", &g) == EM_ERR_INVALID_ARG);
    CHECK(g == NULL);
}

/* ------------------------------------------------------------ tool calls */

static const char *const tools_json =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":12},\"unit\":{\"enum\":"
    "[\"C\",\"F\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"parameters\":{\"$defs\":{\"n\":{\"type\":"
    "\"integer\"}},\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/n\"},\"b\":{\"$ref\":"
    "\"#/$defs/n\"}},\"required\":[\"a\",\"b\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";

static bool tool_text_ok(const em_grammar *g, const char *text) {
    return run_bytes(g, text, false);
}

static void test_tool_calls(void) {
    json_t *tools = json_loads(tools_json, 0, NULL);
    CHECK(tools != NULL);
    em_grammar *g = NULL;
    CHECK_OK(em_grammar_compile_tool_call(&g, tools, NULL, "arguments", "<tool_call>\n",
                                          "\n</tool_call>"));
    if (g) {
        CHECK(tool_text_ok(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                              "\"Paris\", \"unit\": \"C\"}}\n</tool_call>"));
        CHECK(tool_text_ok(g, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":-2}}\n</tool_call>"));
        CHECK(tool_text_ok(g, "<tool_call>\n{\"name\":\"now\",\"arguments\":{}}\n</tool_call>"));
        CHECK(!tool_text_ok(g, "<tool_call>\n{\"name\":\"sub\",\"arguments\":{}}\n</tool_call>"));
        CHECK(!tool_text_ok(g, "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1}}\n</tool_call>"));
        CHECK(!tool_text_ok(g, "{\"name\":\"now\",\"arguments\":{}}"));
    }
    em_grammar_free(g);
    g = NULL;
    CHECK_OK(em_grammar_compile_tool_call(&g, tools, "add", "parameters", NULL, NULL));
    if (g) {
        CHECK(tool_text_ok(g, "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}"));
        CHECK(!tool_text_ok(g, "{\"name\":\"now\",\"parameters\":{}}"));
    }
    em_grammar_free(g);
    g = NULL;
    CHECK(em_grammar_compile_tool_call(&g, tools, "nope", "arguments", NULL, NULL) ==
          EM_ERR_INVALID_ARG);
    CHECK(strstr(em_last_error(), "'nope'") != NULL && g == NULL);
    json_t *bad = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                             "{\"type\":\"object\",\"properties\":{\"x\":{\"not\":{}}}}}}]", 0, NULL);
    CHECK(em_grammar_compile_tool_call(&g, bad, NULL, "arguments", NULL, NULL) == EM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(em_last_error(), "/tools/0/function/parameters/properties/x") != NULL, "%s",
              em_last_error());
    json_decref(bad);
    json_decref(tools);
}

/* ------------------------------------------------------------ validator */

static bool validate(const json_t *schema, const json_t *root, const json_t *v);

static const json_t *resolve_ref(const json_t *root, const char *ref) {
    const json_t *cur = root;
    const char *p = ref + 1;
    char tok[256];
    while (*p == '/' && cur) {
        p++;
        size_t n = 0;
        for (; *p && *p != '/' && n + 1 < sizeof tok; p++) tok[n++] = *p;
        tok[n] = '\0';
        cur = json_object_get(cur, tok);
    }
    return cur;
}

static bool regex_search(const char *pattern, const char *s, size_t n) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err,
                                   &off, NULL);
    if (!re) return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static size_t utf8_length(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static bool type_is(const char *t, const json_t *v) {
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    return false;
}

static bool validate(const json_t *s, const json_t *root, const json_t *v) {
    if (json_is_true(s)) return true;
    if (!json_is_object(s)) return false;
    const json_t *x;
    if (json_is_true(json_object_get(s, "nullable")) && json_is_null(v)) return true;
    if ((x = json_object_get(s, "$ref"))) return validate(resolve_ref(root, json_string_value(x)), root, v);
    if ((x = json_object_get(s, "anyOf"))) {
        bool any = false;
        for (size_t i = 0; i < json_array_size(x); i++) any |= validate(json_array_get(x, i), root, v);
        if (!any) return false;
    }
    if ((x = json_object_get(s, "oneOf"))) {
        int n = 0;
        for (size_t i = 0; i < json_array_size(x); i++) n += validate(json_array_get(x, i), root, v);
        if (n != 1) return false;
    }
    if ((x = json_object_get(s, "allOf")))
        for (size_t i = 0; i < json_array_size(x); i++)
            if (!validate(json_array_get(x, i), root, v)) return false;
    if ((x = json_object_get(s, "const")) && !json_equal(x, v)) return false;
    if ((x = json_object_get(s, "enum"))) {
        bool any = false;
        for (size_t i = 0; i < json_array_size(x); i++) any |= json_equal(json_array_get(x, i), v);
        if (!any) return false;
    }
    if ((x = json_object_get(s, "type"))) {
        bool any = false;
        if (json_is_string(x)) any = type_is(json_string_value(x), v);
        for (size_t i = 0; i < json_array_size(x); i++)
            any |= type_is(json_string_value(json_array_get(x, i)), v);
        if (!any) return false;
    }
    /* Integers keep to the bounds; other numbers only to the sign. */
    if ((x = json_object_get(s, "minimum")) && json_is_number(v) &&
        json_number_value(v) < json_number_value(x) && (json_is_integer(v) || json_number_value(x) <= 0))
        return false;
    if ((x = json_object_get(s, "maximum")) && json_is_integer(v) &&
        json_number_value(v) > json_number_value(x))
        return false;
    if (json_is_object(v)) {
        const json_t *props = json_object_get(s, "properties");
        const json_t *addl = json_object_get(s, "additionalProperties");
        const json_t *req = json_object_get(s, "required");
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_object_get(v, json_string_value(json_array_get(req, i)))) return false;
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)v, k, val) {
            const json_t *ps = props ? json_object_get(props, k) : NULL;
            if (ps) {
                if (!validate(ps, root, val)) return false;
            } else if (props && (!addl || json_is_false(addl))) {
                return false;
            } else if (json_is_false(addl)) {
                return false;
            } else if (json_is_object(addl) && !validate(addl, root, val)) {
                return false;
            }
        }
    }
    if (json_is_array(v)) {
        const json_t *items = json_object_get(s, "items");
        size_t n = json_array_size(v);
        if ((x = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(x)) return false;
        const json_t *prefix = json_object_get(s, "prefixItems");
        size_t k = json_array_size(prefix);
        for (size_t i = 0; i < n && i < k; i++)
            if (!validate(json_array_get(prefix, i), root, json_array_get(v, i))) return false;
        for (size_t i = k; items && i < n; i++)
            if (!validate(items, root, json_array_get(v, i))) return false;
    }
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        size_t bytes = json_string_length(v), len = utf8_length(str, bytes);
        if ((x = json_object_get(s, "minLength")) && len < (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "maxLength")) && len > (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "pattern")) && !regex_search(json_string_value(x), str, bytes))
            return false;
        if ((x = json_object_get(s, "format"))) {
            static const char *const fmts[][2] = {
                {"date", "^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])$"},
                {"time", "^([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d+)?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)$"},
                {"date-time", "^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])T([01]\\d|2[0-3]):[0-5]\\d:"
                              "[0-5]\\d(\\.\\d+)?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)$"},
                {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
            };
            bool ok = false;
            for (size_t i = 0; i < 4; i++)
                if (!strcmp(fmts[i][0], json_string_value(x))) ok = regex_search(fmts[i][1], str, bytes);
            if (!ok) return false;
        }
    }
    return true;
}

/* ----------------------------------------------------------- generation */

static const char *const gen_schemas[] = {
    NULL, /* json_object */
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},\"age\":"
    "{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},\"email\":{\"type\":[\"string\",\"null\"],\"maxLength\":8}},"
    "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\","
    "\"long tag\"]},\"minItems\":1,\"maxItems\":4},\"ok\":{\"type\":\"boolean\"},\"score\":{\"type\":"
    "\"number\"}},\"required\":[\"tags\",\"ok\",\"score\"]}",
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},\"when\":"
    "{\"type\":\"string\",\"format\":\"date-time\"},\"code\":{\"type\":\"string\",\"pattern\":"
    "\"^[A-Z]{2}-\\\\d{3}$\"},\"note\":{\"type\":\"string\",\"pattern\":\"e\"},\"word\":{\"type\":"
    "\"string\",\"pattern\":\"^[a-z ]{1,20}$\"}},\"required\":[\"id\",\"when\",\"code\",\"note\",\"word\"]}",
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":"
    "{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"v\","
    "\"kids\"]}},\"$ref\":\"#/$defs/node\"}",
    "{\"type\":\"object\",\"properties\":{\"call\":{\"oneOf\":[{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"const\":\"get_weather\"},\"arguments\":{\"type\":\"object\",\"properties\":{\"city\":"
    "{\"type\":\"string\",\"minLength\":1,\"maxLength\":10}},\"required\":[\"city\"]}},\"required\":"
    "[\"name\",\"arguments\"]},{\"type\":\"null\"}]},\"extra\":{\"type\":\"object\",\"additionalProperties\":"
    "{\"type\":\"integer\"}}},\"required\":[\"call\",\"extra\"],\"additionalProperties\":{\"type\":\"boolean\"}}",
    "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"x\",\"y\"],\"nullable\":true},"
    "\"minItems\":2,\"maxItems\":3}",
    "{\"type\":[\"number\",\"boolean\"]}", /* complete early, ends with EOG */
    "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5},"
    "{\"enum\":[\"on\",\"off\"]}],\"items\":{\"type\":\"null\"},\"minItems\":2,\"maxItems\":4}",
};

/* Loads a vocabulary from a GGUF file; NULL when it cannot. */
static em_vocab *load_vocab_file(const char *path) {
    em_gguf *g = NULL;
    if (em_gguf_open(&g, path) != EM_OK) return NULL;
    em_vocab *v = NULL;
    if (em_vocab_load(&v, g) != EM_OK) v = NULL;
    em_gguf_close(g);
    return v;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0', *len = (size_t)n;
    return buf;
}

/* Llama 3.2's BPE vocabulary, written into a GGUF from encoder.json and
 * vocab.bpe (as test_tokenizer does); <|end_of_text|> is added as EOS. */
static em_vocab *load_llama32(void) {
    char p_enc[1024], p_bpe[1024];
    test_data_path(p_enc, sizeof p_enc, "tokenizers/llama3.2-bpe/encoder.json");
    test_data_path(p_bpe, sizeof p_bpe, "tokenizers/llama3.2-bpe/vocab.bpe");
    json_t *enc = json_load_file(p_enc, 0, NULL);
    size_t bpe_len = 0;
    char *bpe = read_file(p_bpe, &bpe_len);
    if (!enc || !bpe) {
        json_decref(enc);
        free(bpe);
        return NULL;
    }
    size_t n_tok = json_object_size(enc) + 1;
    const char **toks = calloc(n_tok, sizeof *toks);
    int32_t *types = malloc(n_tok * sizeof *types);
    const char *key;
    json_t *val;
    json_object_foreach(enc, key, val) {
        json_int_t id = json_integer_value(val);
        if (id >= 0 && (size_t)id < n_tok - 1) toks[id] = key;
    }
    for (size_t i = 0; i < n_tok; i++) {
        types[i] = 1;
        if (!toks[i]) toks[i] = "<|unused|>", types[i] = 3;
    }
    toks[n_tok - 1] = "<|end_of_text|>";
    types[n_tok - 1] = 3;
    size_t n_merges = 0, cap = 1 << 18;
    const char **merges = malloc(cap * sizeof *merges);
    for (char *line = bpe; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (*line && strncmp(line, "#version", 8) != 0) {
            if (n_merges == cap) merges = realloc(merges, (cap *= 2) * sizeof *merges);
            merges[n_merges++] = line;
        }
        line = nl ? nl + 1 : NULL;
    }
    em_vocab *v = NULL;
    em_gguf_writer *w = NULL;
    char path[] = "/tmp/ember-grammar-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0 && em_gguf_writer_init(&w) == EM_OK) {
        close(fd);
        uint32_t eos = (uint32_t)(n_tok - 1);
        bool ok = em_gguf_set_str(w, "tokenizer.ggml.model", "gpt2") == EM_OK &&
                  em_gguf_set_str(w, "tokenizer.ggml.pre", "llama-bpe") == EM_OK &&
                  em_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, n_tok) == EM_OK &&
                  em_gguf_set_arr(w, "tokenizer.ggml.token_type", EM_GGUF_INT32, types, n_tok) == EM_OK &&
                  em_gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, n_merges) == EM_OK &&
                  em_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", eos) == EM_OK &&
                  em_gguf_write(w, path) == EM_OK;
        if (ok) v = load_vocab_file(path);
        unlink(path);
        em_gguf_writer_free(w);
    }
    free(merges);
    free(bpe);
    free(toks);
    free(types);
    json_decref(enc);
    return v;
}

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static double rng_unit(rng *r) {
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

typedef struct gen_stats {
    int64_t steps;
    double mask_s;
} gen_stats;

/* Samples with random logits until the grammar is done; returns the text
 * (malloc'd) or NULL when it did not finish in max_steps. */
static char *generate(const em_grammar *g, const em_token_trie *trie, const em_vocab *v,
                      const float *bias, rng *r, int max_steps, gen_stats *st) {
    int32_t n_vocab = em_vocab_n_tokens(v);
    float *logits = malloc(sizeof *logits * (size_t)n_vocab);
    double *p = malloc(sizeof *p * (size_t)n_vocab);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    em_grammar_state *s = NULL;
    bool done = false;
    if (em_grammar_state_init(&s, g, trie) != EM_OK) {
        CHECK_MSG(false, "state init: %s", em_last_error());
        max_steps = 0;
    }
    for (int step = 0; step < max_steps && !done; step++) {
        for (int32_t i = 0; i < n_vocab; i++) logits[i] = (float)(rng_unit(r) * 4.0) + bias[i];
        double t0 = now_s();
        em_status mst = em_grammar_mask(s, logits);
        st->mask_s += now_s() - t0;
        st->steps++;
        CHECK_MSG(mst == EM_OK, "mask: %s", em_last_error());
        if (mst != EM_OK) break;
        double sum = 0, mx = -INFINITY;
        for (int32_t i = 0; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
        CHECK_MSG(mx > -INFINITY, "no token allowed after '%.*s'", (int)len, text);
        if (!(mx > -INFINITY)) break;
        for (int32_t i = 0; i < n_vocab; i++) sum += p[i] = exp(logits[i] - mx);
        double u = rng_unit(r) * sum;
        em_token t = n_vocab - 1;
        for (int32_t i = 0; i < n_vocab; i++) {
            if (p[i] == 0) continue;
            t = i;
            if ((u -= p[i]) < 0) break;
        }
        em_status ast = em_grammar_accept(s, t);
        CHECK_MSG(ast == EM_OK, "accept %d after '%.*s': %s", t, (int)len, text, em_last_error());
        if (ast != EM_OK) break;
        if (em_vocab_is_eog(v, t)) {
            /* After EOG nothing is allowed, EOG included. */
            em_grammar_mask(s, logits);
            bool none = true;
            for (int32_t i = 0; i < n_vocab; i++) none &= logits[i] == -INFINITY;
            CHECK(none && em_grammar_done(s) && em_grammar_accept(s, t) == EM_ERR_INVALID_ARG);
            done = true;
            break;
        }
        char piece[512];
        int32_t n = em_token_to_piece(v, t, piece, sizeof piece, false);
        if (n > 0) {
            if (len + (size_t)n + 1 > cap) text = realloc(text, cap *= 2);
            memcpy(text + len, piece, (size_t)n);
            len += (size_t)n;
        }
        done = em_grammar_done(s);
    }
    text[len] = '\0';
    em_grammar_state_free(s);
    free(logits);
    free(p);
    if (!done) {
        fprintf(stderr, "unfinished after %d steps: '%.300s'\n", max_steps, text);
        free(text);
        return NULL;
    }
    return text;
}

/* Random logits plus a nudge towards tokens that close strings and
 * containers and towards EOG, so that random text ends in reasonable
 * time. */
static float *make_bias(const em_vocab *v) {
    int32_t n = em_vocab_n_tokens(v);
    float *b = calloc((size_t)n, sizeof *b);
    for (em_token t = 0; t < n; t++) {
        char piece[512];
        int32_t k = em_token_to_piece(v, t, piece, sizeof piece, false);
        if (em_vocab_is_eog(v, t)) b[t] = 8;
        for (int32_t i = 0; i < k; i++)
            if (piece[i] == '"' || piece[i] == ']' || piece[i] == '}') b[t] = 6;
    }
    return b;
}

static void test_generation(const char *label, const em_vocab *v, int rounds) {
    double t0 = now_s();
    em_token_trie *trie = NULL;
    CHECK_OK(em_token_trie_init(&trie, v));
    double t_trie = now_s() - t0;
    if (!trie) return;
    float *bias = make_bias(v);
    rng r = {0x9E3779B97F4A7C15ull};
    gen_stats st = {0, 0};
    int ok = 0, total = 0;
    for (size_t k = 0; k < sizeof gen_schemas / sizeof gen_schemas[0]; k++) {
        const char *sch = gen_schemas[k];
        em_grammar *g = NULL;
        em_status cst = sch ? compile(sch, &g) : em_grammar_compile_json_object(&g);
        CHECK_MSG(cst == EM_OK, "%s", em_last_error());
        if (cst != EM_OK) continue;
        json_t *schema = sch ? json_loads(sch, 0, NULL) : json_pack("{s:s}", "type", "object");
        for (int round = 0; round < rounds; round++) {
            total++;
            char *text = generate(g, trie, v, bias, &r, 4000, &st);
            CHECK_MSG(text != NULL, "%s: schema %zu round %d did not finish", label, k, round);
            if (!text) continue;
            json_error_t jerr;
            json_t *val = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            CHECK_MSG(val != NULL, "%s: schema %zu: '%s' does not parse: %s", label, k, text, jerr.text);
            bool valid = val && validate(schema, schema, val);
            CHECK_MSG(valid, "%s: schema %zu: '%s' does not validate", label, k, text);
            ok += valid;
            if (round == 0) printf("  %s schema %zu: %.160s%s\n", label, k, text, strlen(text) > 160 ? "..." : "");
            json_decref(val);
            free(text);
        }
        json_decref(schema);
        em_grammar_free(g);
    }
    /* A forced tool call: the prefix, a call of a listed function with
     * valid arguments, the suffix. */
    json_t *tools = json_loads(tools_json, 0, NULL);
    em_grammar *tg = NULL;
    CHECK_OK(em_grammar_compile_tool_call(&tg, tools, NULL, "arguments", "<tool_call>\n",
                                          "\n</tool_call>"));
    for (int round = 0; tg && round < rounds; round++) {
        total++;
        char *text = generate(tg, trie, v, bias, &r, 4000, &st);
        CHECK_MSG(text != NULL, "%s: tool call round %d did not finish", label, round);
        if (!text) continue;
        size_t len = strlen(text);
        bool framed = len > 25 && !strncmp(text, "<tool_call>\n", 12) &&
                      !strcmp(text + len - 13, "\n</tool_call>");
        json_t *call = framed ? json_loadb(text + 12, len - 25, JSON_ALLOW_NUL, NULL) : NULL;
        const char *name = json_string_value(json_object_get(call, "name"));
        bool valid = false;
        for (size_t i = 0; name && i < json_array_size(tools); i++) {
            const json_t *fn = json_object_get(json_array_get(tools, i), "function");
            if (strcmp(json_string_value(json_object_get(fn, "name")), name) != 0) continue;
            const json_t *params = json_object_get(fn, "parameters");
            const json_t *args = json_object_get(call, "arguments");
            valid = json_object_size(call) == 2 && json_is_object(args) &&
                    (!params || validate(params, params, args));
        }
        CHECK_MSG(valid, "%s: tool call '%s' is not valid", label, text);
        ok += valid;
        if (round == 0) printf("  %s tool call: %.160s\n", label, text);
        json_decref(call);
        free(text);
    }
    em_grammar_free(tg);
    json_decref(tools);
    printf("%s: %d tokens, trie %.1f ms; %d/%d outputs valid; %lld steps, mean mask %.3f ms\n",
           label, em_vocab_n_tokens(v), t_trie * 1e3, ok, total, (long long)st.steps,
           st.steps ? st.mask_s / (double)st.steps * 1e3 : 0.0);
    free(bias);
    em_token_trie_free(trie);
}

/* Mask time at a few positions, first (uncached) and steady. */
static void time_masks(const char *label, const em_vocab *v) {
    em_token_trie *trie = NULL;
    if (em_token_trie_init(&trie, v) != EM_OK) return;
    const char *bounded = "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\","
                          "\"maxLength\":64},\"d\":{\"type\":\"string\",\"format\":\"date\"}}}";
    static const struct {
        bool json_object; /* else the bounded schema */
        const char *at, *what;
    } pos[] = {
        {true, "", "start"},
        {true, "{\"key\": \"some text", "in a string"},
        {true, "{\"key\": [1, 2, {\"x\": 3", "in structure"},
        {false, "{\"s\": \"abc", "in a string of maxLength 64"},
        {false, "{\"d\":\"20", "in a date"},
    };
    float *logits = calloc((size_t)em_vocab_n_tokens(v), sizeof *logits);
    for (size_t k = 0; k < sizeof pos / sizeof pos[0]; k++) {
        em_grammar *g = NULL;
        if (pos[k].json_object) CHECK_OK(em_grammar_compile_json_object(&g));
        else CHECK_OK(compile(bounded, &g));
        em_grammar_state *s = NULL;
        CHECK_OK(em_grammar_state_init(&s, g, trie));
        if (!s) continue;
        CHECK_OK(em_grammar_accept_bytes(s, pos[k].at, strlen(pos[k].at)));
        double t0 = now_s();
        CHECK_OK(em_grammar_mask(s, logits));
        double first = now_s() - t0;
        t0 = now_s();
        for (int i = 0; i < 20; i++) em_grammar_mask(s, logits);
        double steady = (now_s() - t0) / 20;
        int32_t allowed = 0;
        for (int32_t i = 0; i < em_vocab_n_tokens(v); i++) allowed += logits[i] == 0;
        printf("%s mask %-28s: first %6.2f ms, cached %.3f ms, %6d tokens allowed\n", label,
               pos[k].what, first * 1e3, steady * 1e3, allowed);
        memset(logits, 0, sizeof *logits * (size_t)em_vocab_n_tokens(v));
        em_grammar_state_free(s);
        em_grammar_free(g);
    }
    free(logits);
    em_token_trie_free(trie);
}

int main(void) {
    test_compile();
    test_bytes();
    test_integer_ranges();
    test_tool_calls();
    if (!getenv("EMBER_TEST_DATA")) {
        printf("generation over real vocabularies skipped: EMBER_TEST_DATA is not set\n");
        TEST_END();
    }
    char path[1024];
    em_vocab *v = load_vocab_file(test_data_path(path, sizeof path, "models/stories260K.gguf"));
    CHECK_MSG(v != NULL, "stories260K: %s", em_last_error());
    if (v) test_generation("stories260K (SPM)", v, 3);
    em_vocab_free(v);
    v = load_vocab_file(test_data_path(path, sizeof path,
                                       "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"));
    CHECK_MSG(v != NULL, "gpt-2: %s", em_last_error());
    if (v) test_generation("gpt-2 (BPE)", v, 2);
    em_vocab_free(v);
    v = load_llama32();
    CHECK_MSG(v != NULL, "llama3.2: %s", em_last_error());
    if (v) {
        time_masks("llama3.2", v);
        test_generation("llama3.2 (BPE)", v, 1);
    }
    em_vocab_free(v);
    TEST_END();
}

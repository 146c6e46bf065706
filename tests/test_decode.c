// test_decode.c — cached sampling's graph transformation (compiler/decode.c)
// against the whole-window sample graph, both run by the f64 reference
// interpreter: the decode graph's logits at position p, fed the sample
// graph's own k and v rows [0, p) as its cache, equal the sample graph's
// row p (within 1e-9). Models that mix positions have no decode graph and
// a reason with the op's file:line:col. The native kernel is checked
// against the whole-window attention kernel (bpck_attention_f32, causal).
#include "testutil.h"

#include "bpc_kernels.h"

// A GPT in the shape of models/gpt_poetry.yaml (packed q, k, v) with the
// position term POS, the attention ATT, more entries EXTRA and the blocks
// reading XIN.
#define GPT_YAML4(POS, ATT, EXTRA, XIN)                                                                  \
  "bpc: 1\nname: g\ndims: {B: 2, T: 7, C: 8, NH: 2, L: 2, V: 11}\n"                                      \
  "inputs:\n  tokens: {shape: [B, T], dtype: i32}\n  targets: {shape: [B, T], dtype: i32}\n"             \
  "params:\n  wte: {shape: [V, C], init: normal(0.5)}\n  wpe: {shape: [T, C], init: normal(0.5)}\n"      \
  "  g: {shape: [C], init: normal(1)}\n  b: {shape: [C], init: normal(0.1)}\n"                           \
  "functions:\n  block:\n    args: [x]\n    params:\n"                                                   \
  "      w_qkv: {shape: [C, 3 * C], init: normal(0.5)}\n"                                                \
  "      w1: {shape: [C, 2 * C], init: normal(0.5)}\n      w2: {shape: [2 * C, C], init: normal(0.5)}\n" \
  "    graph:\n      h: layer_norm(x, g, b)\n      qkv: h @ w_qkv\n"                                     \
  "      q: slice(qkv, 0, C)\n      k: slice(qkv, C, 2 * C)\n      v: slice(qkv, 2 * C, 3 * C)\n"        \
  "      att: " ATT                                                                                      \
  "\n      x1: x + att\n      out: x1 + gelu(rms_norm(x1, g) @ w1) @ w2\n"                               \
  "    return: out\n"                                                                                    \
  "graph:\n  x0: embedding(tokens, wte) + " POS "\n" EXTRA "  xL: repeat(block, " XIN                    \
  ", times=L)\n  logits: layer_norm(xL, g, b) @ transpose(wte)\n"                                        \
  "  loss: cross_entropy(logits, targets)\nloss: loss\ngenerate: {tokens: tokens, logits: logits}\n"

#define GPT_YAML(POS, ATT, EXTRA) GPT_YAML4(POS, ATT, EXTRA, "x0")
#define CAUSAL "attention(q, k, v, heads=NH, causal=true)"

typedef struct {
  Arena a;
  Captured c;
  Graph *s, *d;
  int logits;
  char *why;
} Built;

// The sample graph (B = 1, logits the only output) and its decode graph.
static void build(Built *b, const char *yaml, DType dt) {
  memset(b, 0, sizeof *b);
  cap_open(&b->c);
  Model *m = model_load_text(&b->a, &b->c.d, "t.yaml", yaml, strlen(yaml));
  cr_assert(m, "%s", cap_text(&b->c));
  DimOverride ov = {"B", 1};
  b->s = graph_build(m, &b->c.d, &ov, 1, dt);
  cr_assert(b->s, "%s", cap_text(&b->c));
  for (int i = 0; i < b->s->named.n; i++)
    if (!strcmp(b->s->named.v[i].name, "logits")) b->logits = b->s->named.v[i].node;
  b->s->outputs.n = 0;
  VEC_PUSH(b->s->outputs, ((GNamed){"logits", b->logits}));
  b->d = decode_graph(b->s, "tokens", "logits", b->logits, &b->why);
}

static void built_free(Built *b) {
  graph_free(b->d), graph_free(b->s);
  free(b->why);
  cap_close(&b->c);
  arena_free(&b->a);
}

static int input(const Graph *g, const char *name) {
  for (int i = 0; i < g->inputs.n; i++)
    if (!strcmp(g->inputs.v[i].name, name)) return g->inputs.v[i].node;
  cr_assert_fail("no input %s", name);
  return -1;
}

static int output(const Graph *g, const char *name) {
  for (int i = 0; i < g->outputs.n; i++)
    if (!strcmp(g->outputs.v[i].name, name)) return g->outputs.v[i].node;
  cr_assert_fail("no output %s", name);
  return -1;
}

// Every position p < n of a prompt of n tokens: decode logits == row p.
static void check_rows(const char *yaml, int n) {
  Built b;
  build(&b, yaml, DT_F64);
  cr_assert(b.d, "no decode graph: %s", b.why ? b.why : "?");
  const int64_t T = 7, V = 11;
  double ids[7];
  for (int k = 0; k < T; k++) ids[k] = k < n ? (3 * k + 5) % V : 0;
  Interp *si = interp_new(b.s, 1, 0, false);
  interp_init_params(si, 42);
  interp_set(si, input(b.s, "tokens"), ids, T);
  cr_assert(interp_run(si), "%s", si->err);
  const Value *lg = interp_value(si, b.logits);
  int nattn = 0;
  while (nattn < 8) {
    char nm[32];
    snprintf(nm, sizeof nm, "__kcache.%d", nattn);
    bool found = false;
    for (int i = 0; i < b.d->inputs.n; i++) found |= !strcmp(b.d->inputs.v[i].name, nm);
    if (!found) break;
    nattn++;
  }
  cr_assert_eq(nattn, 2, "one cache per block");
  for (int p = 0; p < n; p++) {
    Interp *di = interp_new(b.d, 1, 0, false);
    interp_init_params(di, 42);
    double pos = p;
    interp_set(di, input(b.d, "tokens"), &ids[p], 1);
    interp_set(di, input(b.d, "__pos"), &pos, 1);
    for (int i = 0; i < nattn; i++)
      for (int w = 0; w < 2; w++) {
        char on[32], cn[32];
        snprintf(on, sizeof on, "__%c.%d", w ? 'v' : 'k', i);
        snprintf(cn, sizeof cn, "__%ccache.%d", w ? 'v' : 'k', i);
        const Value *kv = interp_value(si, output(b.s, on));
        int64_t C = kv->shape.d[2];
        double *cache = xcalloc((size_t)(T * C), sizeof(double));
        memcpy(cache, kv->v, sizeof(double) * (size_t)(p * C));  // rows [0, p) only
        interp_set(di, input(b.d, cn), cache, T * C);
        free(cache);
      }
    cr_assert(interp_run(di), "%s", di->err);
    const Value *dl = interp_value(di, output(b.d, "logits"));
    cr_assert_eq(shape_numel(&dl->shape), V);
    for (int v = 0; v < V; v++)
      cr_assert_float_eq(dl->v[v], lg->v[p * V + v], 1e-9, "position %d logit %d: decode %.17g, window %.17g", p, v,
                         dl->v[v], lg->v[p * V + v]);
    interp_free(di);
  }
  interp_free(si);
  built_free(&b);
}

Test(decode, position_param_rows_match_the_window) { check_rows(GPT_YAML("wpe", CAUSAL, ""), 7); }
Test(decode, short_prompt_rows_match) { check_rows(GPT_YAML("wpe", CAUSAL, ""), 3); }
Test(decode, arange_positions_rows_match) { check_rows(GPT_YAML("embedding(arange(T), wpe)", CAUSAL, ""), 7); }
Test(decode, sliced_positions_rows_match) { check_rows(GPT_YAML("slice(wpe, 0, T, axis=0) * 2", CAUSAL, ""), 6); }
Test(decode, unpacked_attention_rows_match) {  // q, k, v not the thirds of one tensor: plain attention
  check_rows(GPT_YAML("wpe", "attention(q * 1.5, k, v, heads=NH, causal=true)", ""), 5);
}

// No decode graph, and the reason names the op.
static void check_refused(const char *yaml, const char *why) {
  Built b;
  build(&b, yaml, DT_F64);
  cr_assert_null(b.d, "a decode graph for a model that mixes positions");
  cr_assert(b.why && strstr(b.why, why) && !strncmp(b.why, "t.yaml:", 7), "why: %s", b.why ? b.why : "(none)");
  built_free(&b);
}

Test(decode, non_causal_attention_refused) {
  check_refused(GPT_YAML("wpe", "attention(q, k, v, heads=NH)", ""), "not causal");
}
Test(decode, mean_over_time_refused) {
  check_refused(
      GPT_YAML("wpe - mean(wpe, axis=0) + 0 * mean(embedding(tokens, wte), axis=1, keepdims=true)", CAUSAL, ""),
      "mean over the positions");
}
Test(decode, softmax_over_time_refused) {
  check_refused(GPT_YAML("softmax(embedding(tokens, wte), axis=1)", CAUSAL, ""), "softmax over the positions");
}
Test(decode, shifted_positions_refused) {  // x[t] reads x[t-1]: a slice along time
  check_refused(
      GPT_YAML4("wpe", CAUSAL, "  x0s: concat(slice(x0, 0, 1, axis=1), slice(x0, 0, T - 1, axis=1), axis=1)\n", "x0s"),
      "slice along the positions");
}

// The kernel: the new query at position p over the cache equals row p of
// causal attention over the whole window, and it stores k, v as row p.
Test(decode, kernel_matches_causal_attention) {
  enum { Tc = 37, C = 24, H = 3 };
  float q[Tc * C], k[Tc * C], v[Tc * C], full[Tc * C], out[C], kc[Tc * C], vc[Tc * C], s[Tc + 16];
  uint64_t r = 12345;
  for (int i = 0; i < Tc * C; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    q[i] = (float)((r >> 40) % 2001) / 1000.0f - 1;
    k[i] = (float)((r >> 20) % 2001) / 1000.0f - 1;
    v[i] = (float)((r >> 8) % 2001) / 1000.0f - 1;
  }
  float *scratch = malloc(bpck_attention_scratch_f32(Tc, Tc, C / H) * sizeof(float));
  bpck_attention_f32(full, q, k, v, 1, Tc, Tc, C, H, 1, NULL, C, scratch, 0, H);
  free(scratch);
  memset(kc, 0, sizeof kc), memset(vc, 0, sizeof vc);
  for (int32_t p = 0; p < Tc; p++) {
    bpck_attention_decode_f32(out, q + p * C, k + p * C, v + p * C, kc, vc, &p, Tc, C, H, s, 0, H);
    for (int c = 0; c < C; c++) {
      cr_assert_float_eq(out[c], full[p * C + c], 1e-5, "position %d channel %d", p, c);
      cr_assert_eq(kc[p * C + c], k[p * C + c]);
      cr_assert_eq(vc[p * C + c], v[p * C + c]);
    }
  }
}

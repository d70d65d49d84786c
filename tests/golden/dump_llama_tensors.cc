// Dev tool (not built by CMake, not part of CI): runs llama.cpp on a token list and writes every
// intermediate tensor of its graph, so that Saola's forward pass can be compared op by op.
//
//   tests/golden/build-dump-tool            # builds build-dump/dump_llama_tensors
//   build-dump/dump_llama_tensors MODEL OUT_DIR [--split] ID ID ...
//
// Settings are those of tests/golden/make_fixtures.py (n_ctx 1024, n_batch/n_ubatch 512, 2
// threads, flash attention off, f16 KV). Without --split the ids go in one llama_decode (prompt
// processing); with --split all ids but the last go in one llama_decode and the last one in a
// second (the first decode step of the fixtures), and only the second call's tensors are dumped.
// Each tensor named NAME (e.g. attn_norm-0, kq-0, result_output) is written as OUT_DIR/NAME.f32:
// raw float32 in ggml's element order (ne0 fastest), f16 converted to float; a repeated name gets
// a suffix .1, .2, ... OUT_DIR/index.txt lists "file type ne0 ne1 ne2 ne3 op" per tensor, in
// graph order. The last position's logits are written as OUT_DIR/logits.f32.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

namespace {

struct DumpState {
  std::string dir;
  bool enabled = true;
  std::map<std::string, int> seen;
  FILE* index = nullptr;
};

float ElementAsFloat(const ggml_tensor* t, const uint8_t* base, int64_t i0, int64_t i1,
                     int64_t i2, int64_t i3) {
  const uint8_t* p = base + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
  switch (t->type) {
    case GGML_TYPE_F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case GGML_TYPE_F16: {
      ggml_fp16_t h;
      std::memcpy(&h, p, 2);
      return ggml_fp16_to_fp32(h);
    }
    case GGML_TYPE_I32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return static_cast<float>(v);
    }
    default:
      return 0.0f;
  }
}

bool Callback(ggml_tensor* t, bool ask, void* user) {
  auto* st = static_cast<DumpState*>(user);
  if (ask) return st->enabled;
  if (!st->enabled) return true;
  if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_I32) {
    return true;
  }
  std::string name = t->name;
  for (char& c : name) {
    if (c == '/' || c == ' ' || c == '(' || c == ')') c = '_';
  }
  const int k = st->seen[name]++;
  if (k > 0) name += "." + std::to_string(k);
  // Copy the bytes spanned by the tensor (views included) to host memory.
  size_t span = ggml_type_size(t->type);
  for (int d = 0; d < 4; ++d) span += (t->ne[d] - 1) * t->nb[d];
  std::vector<uint8_t> raw(span);
  ggml_backend_tensor_get(t, raw.data(), 0, span);
  std::vector<float> out;
  out.reserve(ggml_nelements(t));
  for (int64_t i3 = 0; i3 < t->ne[3]; ++i3)
    for (int64_t i2 = 0; i2 < t->ne[2]; ++i2)
      for (int64_t i1 = 0; i1 < t->ne[1]; ++i1)
        for (int64_t i0 = 0; i0 < t->ne[0]; ++i0)
          out.push_back(ElementAsFloat(t, raw.data(), i0, i1, i2, i3));
  const std::string path = st->dir + "/" + name + ".f32";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fwrite(out.data(), sizeof(float), out.size(), f);
  std::fclose(f);
  std::fprintf(st->index, "%s %s %lld %lld %lld %lld %s\n", name.c_str(), ggml_type_name(t->type),
               (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
               (long long)t->ne[3], ggml_op_desc(t));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL OUT_DIR [--split] ID ID ...\n", argv[0]);
    return 2;
  }
  DumpState st;
  st.dir = argv[2];
  int first_id = 3;
  bool split = false;
  if (std::strcmp(argv[3], "--split") == 0) {
    split = true;
    first_id = 4;
  }
  std::vector<llama_token> ids;
  for (int i = first_id; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
  if (ids.empty() || (split && ids.size() < 2)) {
    std::fprintf(stderr, "need ids (at least 2 with --split)\n");
    return 2;
  }
  st.index = std::fopen((st.dir + "/index.txt").c_str(), "w");
  if (st.index == nullptr) {
    std::perror("index.txt");
    return 1;
  }

  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (model == nullptr) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 1024;
  cp.n_batch = 512;
  cp.n_ubatch = 512;
  cp.n_threads = 2;
  cp.n_threads_batch = 2;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.type_k = GGML_TYPE_F16;
  cp.type_v = GGML_TYPE_F16;
  cp.cb_eval = Callback;
  cp.cb_eval_user_data = &st;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) return 1;

  const size_t n_first = split ? ids.size() - 1 : ids.size();
  st.enabled = !split;
  llama_batch batch = llama_batch_get_one(ids.data(), static_cast<int32_t>(n_first));
  if (llama_decode(ctx, batch) != 0) return 1;
  if (split) {
    st.enabled = true;
    llama_batch one = llama_batch_get_one(ids.data() + n_first, 1);
    if (llama_decode(ctx, one) != 0) return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  const float* logits = llama_get_logits_ith(ctx, -1);
  FILE* f = std::fopen((st.dir + "/logits.f32").c_str(), "wb");
  std::fwrite(logits, sizeof(float), n_vocab, f);
  std::fclose(f);
  std::fclose(st.index);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}

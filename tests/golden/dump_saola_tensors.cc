// Dev tool (not part of CI): Saola's side of tests/golden/dump_llama_tensors.cc. Runs LlamaModel
// on the CPU backend (2 threads) over a token list and writes the output of every backend op
// under llama.cpp's tensor names (embd, attn_norm-L, Qcur-L, Qcur-L.2 (after rope), Kcur-L,
// Kcur-L.2, Vcur-L, kqv_out-L, attn_out-L, ffn_inp-L, ffn_norm-L, ffn_gate-L, ffn_up-L,
// ffn_swiglu-L, ffn_out-L, l_out-L, result_norm, result_output) as raw float32, rows of
// [n, dim], so that tests/golden/compare_dumps.py can compare the two bit for bit.
//
//   tests/golden/build-dump-tool             # also builds this one (needs build-num or BUILD=...)
//   build-dump/dump_saola_tensors MODEL OUT_DIR [--split] ID ID ...
//
// --split: all ids but the last in one Forward, then the last one alone (dumping only that step),
// as the first decode step of the golden fixtures.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "worker/model/gguf.h"
#include "worker/model/kv_cache.h"
#include "worker/model/llama_model.h"

namespace saola {
namespace {

class RecordingBackend : public kernels::Backend {
 public:
  RecordingBackend(kernels::Backend& inner, int num_layers)
      : inner_(inner), num_layers_(num_layers) {}
  std::string dir;
  bool enabled = false;

  kernels::Buffer Allocate(size_t bytes) override { return inner_.Allocate(bytes); }
  void MatMul(const kernels::Weight& w, const float* x, int64_t n, float* y) override {
    inner_.MatMul(w, x, n, y);
    if (layer_ >= num_layers_) {
      Write("result_output", y, n * w.rows);
    } else if (matmuls_in_layer_++ == 0) {
      Write(L("attn_out"), y, n * w.rows);
    } else {
      Write(L("ffn_out"), y, n * w.rows);
    }
  }
  void MatMulShared(std::span<const kernels::Weight> ws, const float* x, int64_t n,
                    std::span<float* const> ys) override {
    inner_.MatMulShared(ws, x, n, ys);
    if (ws.size() == 3) {
      Write(L("Qcur"), ys[0], n * ws[0].rows);
      Write(L("Kcur"), ys[1], n * ws[1].rows);
      Write(L("Vcur"), ys[2], n * ws[2].rows);
      ropes_ = 0;
    } else {
      Write(L("ffn_gate"), ys[0], n * ws[0].rows);
      Write(L("ffn_up"), ys[1], n * ws[1].rows);
    }
  }
  void Embed(const kernels::Weight& table, const int32_t* ids, int64_t n, float* out) override {
    inner_.Embed(table, ids, n, out);
    layer_ = 0;
    matmuls_in_layer_ = 0;
    Write("embd", out, n * table.cols);
  }
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override {
    inner_.RmsNorm(x, weight, n, dim, eps, out);
    Write(layer_ >= num_layers_ ? "result_norm" : L("attn_norm"), out, n * dim);
  }
  void AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                  int64_t dim, float eps, float* out) override {
    inner_.AddRmsNorm(residual, delta, weight, n, dim, eps, out);
    if (matmuls_in_layer_ == 1) {
      Write(L("ffn_inp"), residual, n * dim);
      Write(L("ffn_norm"), out, n * dim);
    } else {
      Write(L("l_out"), residual, n * dim);
      NextLayer();
      Write(L("attn_norm"), out, n * dim);
    }
  }
  void Add(float* x, const float* delta, int64_t n, int64_t dim) override {
    inner_.Add(x, delta, n, dim);
    Write(L("l_out"), x, n * dim);
    NextLayer();
  }
  void Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads, int32_t head_dim,
            const kernels::RopeParams& params) override {
    inner_.Rope(x, positions, n, num_heads, head_dim, params);
    Write(L(ropes_++ == 0 ? "Qcur" : "Kcur") + ".2", x, n * num_heads * head_dim);
  }
  void SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) override {
    inner_.SiluMul(gate, up, n, dim, out);
    Write(L("ffn_swiglu"), out, n * dim);
  }
  void StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
               const kernels::KvLayer& kv) override {
    inner_.StoreKv(k, v, slots, n, kv);
  }
  void Attention(const float* q, const kernels::KvLayer& kv,
                 std::span<const kernels::AttentionSeq> seqs, int32_t num_heads, float scale,
                 float* out) override {
    inner_.Attention(q, kv, seqs, num_heads, scale, out);
    int64_t rows = 0;
    for (const auto& s : seqs) rows += s.num_q;
    Write(L("kqv_out"), out, rows * num_heads * kv.head_dim);
  }

 private:
  std::string L(const std::string& name) const { return name + "-" + std::to_string(layer_); }
  void NextLayer() {
    ++layer_;
    matmuls_in_layer_ = 0;
  }
  void Write(const std::string& name, const float* data, int64_t count) {
    if (!enabled) return;
    FILE* f = std::fopen((dir + "/" + name + ".f32").c_str(), "wb");
    if (f == nullptr) return;
    std::fwrite(data, sizeof(float), count, f);
    std::fclose(f);
  }

  kernels::Backend& inner_;
  int num_layers_;
  int layer_ = 0;
  int matmuls_in_layer_ = 0;
  int ropes_ = 0;
};

int Main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL OUT_DIR [--split] ID ID ...\n", argv[0]);
    return 2;
  }
  int first = 3;
  bool split = false;
  if (std::strcmp(argv[3], "--split") == 0) {
    split = true;
    first = 4;
  }
  std::vector<int32_t> ids;
  for (int i = first; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
  auto file = model::GgufFile::Open(argv[1]);
  if (!file.ok()) {
    std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
    return 1;
  }
  kernels::cpu::CpuBackend cpu(2);
  RecordingBackend rec(cpu, 30);
  rec.dir = argv[2];
  auto m = model::LlamaModel::Load(**file, rec, {});
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
    return 1;
  }
  auto& lm = **m;
  const int32_t block_size = 16;
  const int32_t num_blocks = 64;
  auto kv = model::KvCacheStorage::Create(rec, lm.KvShape(num_blocks, block_size));
  if (!kv.ok()) return 1;
  std::vector<int32_t> table(num_blocks);
  for (int i = 0; i < num_blocks; ++i) table[i] = i;

  auto step = [&](size_t begin, size_t end) -> std::span<const float> {
    model::StepBatch batch;
    batch.token_ids.assign(ids.begin() + begin, ids.begin() + end);
    model::SequenceStep s;
    s.num_tokens = static_cast<int32_t>(end - begin);
    s.context_len = static_cast<int32_t>(end);
    s.block_table = table;
    s.num_logits = 1;
    batch.seqs.push_back(s);
    auto logits = lm.Forward(batch, **kv);
    if (!logits.ok()) {
      std::fprintf(stderr, "%s\n", logits.status().ToString().c_str());
      std::exit(1);
    }
    return *logits;
  };
  std::span<const float> logits;
  if (split) {
    rec.enabled = false;
    step(0, ids.size() - 1);
    rec.enabled = true;
    logits = step(ids.size() - 1, ids.size());
  } else {
    rec.enabled = true;
    logits = step(0, ids.size());
  }
  FILE* f = std::fopen((rec.dir + "/logits.f32").c_str(), "wb");
  std::fwrite(logits.data(), sizeof(float), logits.size(), f);
  std::fclose(f);
  return 0;
}

}  // namespace
}  // namespace saola

int main(int argc, char** argv) { return saola::Main(argc, argv); }

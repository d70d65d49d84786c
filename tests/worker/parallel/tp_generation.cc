#include "tests/worker/parallel/tp_generation.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "common/json.h"

namespace saola::test {
namespace {

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

Generation Generate(const std::string& model, const std::string& prompt, int tp_size,
                    int max_tokens, const std::string& device) {
  static std::atomic<int> calls{0};
  const std::string err_path = ::testing::TempDir() + "/tp_generate_err_" +
                               std::to_string(getpid()) + "_" + std::to_string(calls++);
  const std::string cmd = std::string(SAOLA_BINARY_DIR) + "/bin/saola-worker generate --model " +
                          Quote(model) + " --prompt " + Quote(prompt) + " --max-tokens " +
                          std::to_string(max_tokens) +
                          " --ignore-eos --json --top-logits 5 --threads 2 --tp-size " +
                          std::to_string(tp_size) + " --device " + device + " </dev/null 2>" + err_path;
  Generation g;
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  g.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_path);
  g.err.assign(std::istreambuf_iterator<char>(err), {});
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const size_t nl = out.rfind('\n');
  auto doc = json::Parse(nl == std::string::npos ? out : out.substr(nl + 1));
  if (!doc.ok() || doc->Find("ids") == nullptr || doc->Find("top_logits") == nullptr) {
    g.exit_code = g.exit_code == 0 ? -2 : g.exit_code;
    return g;
  }
  for (const json::Value& v : doc->Find("ids")->arr()) g.ids.push_back(static_cast<int>(v.num()));
  for (const json::Value& step : doc->Find("top_logits")->arr()) {
    g.top.emplace_back();
    for (const json::Value& pair : step.arr()) {
      g.top.back().emplace_back(static_cast<int>(pair.arr()[0].num()), pair.arr()[1].num());
    }
  }
  std::remove(err_path.c_str());
  return g;
}

void Compare(const Generation& base, const Generation& other, double tolerance, double near_tie,
             Comparison* c) {
  ASSERT_EQ(other.ids.size(), base.ids.size());
  ASSERT_EQ(other.top.size(), base.top.size());
  for (size_t step = 0; step < base.ids.size(); ++step) {
    for (const auto& [id, logit] : base.top[step]) {
      for (const auto& [other_id, other_logit] : other.top[step]) {
        if (other_id != id) continue;
        const double diff = std::fabs(other_logit - logit);
        c->max_logit_diff = std::max(c->max_logit_diff, diff);
        EXPECT_LE(diff, tolerance) << "step " << step << " token " << id;
      }
    }
    if (other.ids[step] == base.ids[step]) continue;
    double base_for_other = -INFINITY;
    for (const auto& [id, logit] : base.top[step]) {
      if (id == other.ids[step]) base_for_other = logit;
    }
    EXPECT_LE(base.top[step][0].second - base_for_other, near_tie)
        << "step " << step << ": chose " << other.ids[step] << " instead of " << base.ids[step];
    ++c->near_ties;
    return;
  }
}

}  // namespace saola::test

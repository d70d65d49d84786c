#include "tests/common/golden_cases.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/json.h"
#include "tests/common/reference_model.h"

namespace saola::test {
namespace {

std::vector<int32_t> Ids(const json::Value& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.arr()) out.push_back(static_cast<int32_t>(x.num()));
  return out;
}

}  // namespace

std::vector<GoldenCase> LoadGoldenCases() {
  std::ifstream in(TestDataPath("golden/greedy_cases.json"));
  std::stringstream text;
  text << in.rdbuf();
  auto doc = json::Parse(text.str());
  EXPECT_TRUE(doc.ok()) << doc.status();
  std::vector<GoldenCase> cases;
  if (!doc.ok()) return cases;
  for (const json::Value& c : doc->Find("cases")->arr()) {
    GoldenCase g;
    g.name = c.Find("name")->str();
    g.prompt = c.Find("prompt")->str();
    g.prompt_ids = Ids(*c.Find("prompt_ids"));
    g.ids = Ids(*c.Find("ids"));
    for (const json::Value& step : c.Find("top5")->arr()) {
      std::vector<std::pair<int32_t, double>> top;
      for (const json::Value& pair : step.arr()) {
        top.emplace_back(static_cast<int32_t>(pair.arr()[0].num()), pair.arr()[1].num());
      }
      g.top5.push_back(top);
    }
    cases.push_back(std::move(g));
  }
  return cases;
}

}  // namespace saola::test

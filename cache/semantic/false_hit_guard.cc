#include "cache/semantic/false_hit_guard.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <optional>

#include "absl/strings/str_cat.h"

namespace saola::cache {
namespace {

// This abseil's string_view is its own type, not std::string_view: local helpers instead.
bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool EndsWith(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}
std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ---- Lexicon -------------------------------------------------------------------------------

// A closed class: members are mutually exclusive meanings; each member lists its surface forms
// (lower case, base forms; Lookup also tries simple inflections). A surface form belongs to one
// class only (the index keeps the first).
struct WordClass {
  const char* name;
  std::vector<std::vector<const char*>> members;
};

const std::vector<WordClass>& Classes() {
  static const auto* classes = new std::vector<WordClass>{
      // Antonyms (two poles, each a small synonym set).
      {"power", {{"on", "enable", "activate", "unmute"}, {"off", "disable", "deactivate", "mute"}}},
      {"amount",
       {{"increase", "raise", "boost", "more", "higher", "up", "upward", "grow", "bigger", "larger",
         "maximize", "extend", "lengthen", "widen"},
        {"decrease", "reduce", "lower", "less", "fewer", "down", "downward", "shrink", "smaller",
         "minimize", "shorten", "narrow", "cut"}}},
      {"extreme", {{"max", "maximum", "most", "largest", "biggest", "highest", "best", "top"},
                   {"min", "minimum", "least", "smallest", "lowest", "worst", "bottom"}}},
      {"sequence", {{"before", "prior", "earlier", "first", "beginning", "start", "previous"},
                    {"after", "later", "last", "end", "next", "following"}}},
      {"time_past", {{"past", "old", "older", "oldest"}, {"future", "new", "newer", "newest"}}},
      {"age", {{"young", "younger", "youngest"}, {"elderly", "aged"}}},
      {"begin", {{"stop", "halt", "pause", "quit", "terminate", "kill", "cancel"},
                 {"resume", "continue", "restart", "launch"}}},
      {"open", {{"open", "unlock", "unlocked"}, {"close", "shut", "lock", "locked", "closed"}}},
      {"add", {{"add", "insert", "append", "create", "install", "include", "attach"},
               {"remove", "delete", "erase", "uninstall", "exclude", "detach", "drop"}}},
      {"trade", {{"buy", "purchase", "bought", "acquire"}, {"sell", "sold"}}},
      {"lend", {{"borrow", "borrowed"}, {"lend", "lent", "loan"}}},
      {"transfer", {{"upload", "push", "send"},
                    {"download", "pull", "receive", "fetch"}}},
      {"import", {{"import", "imports"}, {"export", "exports"}}},
      {"crypt", {{"encrypt", "encode", "compress", "serialize", "zip", "encryption", "encoding"},
                 {"decrypt", "decode", "decompress", "deserialize", "unzip", "decryption",
                  "decoding"}}},
      {"connect", {{"connect", "mount", "plug", "login", "signin"},
                   {"disconnect", "unmount", "unplug", "logout", "signout"}}},
      {"show", {{"show", "display", "unhide", "expand", "visible"},
                {"hide", "collapse", "hidden", "invisible"}}},
      {"win", {{"win", "won", "winning", "winner", "victory"},
               {"lose", "lost", "losing", "loser", "defeat"}}},
      {"temperature", {{"hot", "warm", "warmer", "hotter", "heat", "heating"},
                       {"cold", "cool", "cooler", "colder", "chill", "freeze", "freezing",
                        "cooling"}}},
      {"speed", {{"fast", "faster", "fastest", "quick", "quickly", "speed"},
                 {"slow", "slower", "slowest", "slowly"}}},
      {"length", {{"long", "longer", "longest"}, {"short", "shorter", "shortest", "brief"}}},
      {"weight", {{"heavy", "heavier", "heaviest"}, {"light", "lighter", "lightest"}}},
      {"price", {{"cheap", "cheaper", "cheapest", "inexpensive", "affordable"},
                 {"expensive", "pricey", "costly"}}},
      {"strength", {{"strong", "stronger", "strongest"}, {"weak", "weaker", "weakest"}}},
      {"truth", {{"true", "correct", "right_answer"}, {"false", "incorrect", "wrong"}}},
      {"safety", {{"safe", "safely", "secure", "harmless"},
                  {"dangerous", "unsafe", "harmful", "risky", "insecure", "toxic"}}},
      {"legal", {{"legal", "allowed", "permitted", "lawful"},
                 {"illegal", "forbidden", "prohibited", "banned", "unlawful"}}},
      {"allow", {{"allow", "accept", "approve", "grant", "permit", "whitelist"},
                 {"deny", "reject", "refuse", "revoke", "block", "blacklist", "ban"}}},
      {"sign", {{"positive", "plus", "gain", "profit", "credit"},
                {"negative", "minus", "loss", "debit"}}},
      {"arith", {{"add_op", "sum", "addition"}, {"subtract", "difference", "subtraction"},
                 {"multiply", "product", "multiplication"}, {"divide", "quotient", "division"}}},
      {"vertical", {{"above", "over", "upper", "uppercase", "top_side", "upstairs", "inner"},
                    {"below", "under", "lower_side", "lowercase", "downstairs", "outer",
                     "beneath"}}},
      {"side", {{"left"}, {"right"}}},
      {"inout", {{"inside", "indoor", "indoors", "internal", "input", "entrance", "enter"},
                 {"outside", "outdoor", "outdoors", "external", "output", "exit"}}},
      {"sort", {{"ascending", "increasing"}, {"descending", "decreasing"}}},
      {"visibility", {{"public"}, {"private"}}},
      {"travel", {{"arrive", "arrival", "arriving", "incoming", "inbound"},
                  {"depart", "departure", "departing", "outgoing", "outbound", "leave"}}},
      {"breath", {{"inhale"}, {"exhale"}}},
      {"hire", {{"hire", "hiring", "employ"}, {"fire", "firing", "dismiss", "layoff"}}},
      {"sleep", {{"asleep", "sleep", "sleeping"}, {"awake", "wake"}}},
      {"wet", {{"wet", "moist", "humid"}, {"dry", "arid"}}},
      {"rich", {{"rich", "wealthy"}, {"poor"}}},
      {"full", {{"full"}, {"empty"}}},
      {"meridiem", {{"am"}, {"pm"}}},
      {"gender", {{"male", "man", "men", "boy", "boys", "masculine"},
                  {"female", "woman", "women", "girl", "girls", "feminine"}}},
      {"parity", {{"even"}, {"odd"}}},
      {"sweet", {{"sweet"}, {"sour", "bitter", "salty", "savory", "spicy"}}},
      // Units (canonical member, abbreviations and spellings).
      {"unit_length",
       {{"km", "kilometer", "kilometre", "kms"}, {"mile", "mi"}, {"meter", "metre", "m"},
        {"cm", "centimeter", "centimetre"}, {"mm", "millimeter", "millimetre"},
        {"inch", "inches"}, {"foot", "feet", "ft"}, {"yard", "yd"}}},
      {"unit_mass", {{"kg", "kilogram", "kilo", "kgs"}, {"g", "gram", "gr"},
                     {"lb", "lbs", "pound"}, {"oz", "ounce"}, {"ton", "tonne"},
                     {"mg", "milligram"}}},
      {"unit_temp", {{"celsius", "centigrade"}, {"fahrenheit"}, {"kelvin"}}},
      {"unit_volume", {{"liter", "litre", "l"}, {"ml", "milliliter", "millilitre"},
                       {"gallon", "gal"}, {"cup"}, {"tablespoon", "tbsp"},
                       {"teaspoon", "tsp"}, {"pint"}, {"quart"}}},
      {"unit_time", {{"second", "sec", "secs"}, {"minute", "min_t", "mins"},
                     {"hour", "hr", "hrs", "h"}, {"day", "daily"}, {"week", "weekly"},
                     {"month", "monthly"}, {"year", "yearly", "annual", "annually", "yr"},
                     {"decade"}, {"century"}, {"millisecond", "ms"}}},
      {"unit_data", {{"byte"}, {"kb", "kilobyte"}, {"mb", "megabyte"}, {"gb", "gigabyte"},
                     {"tb", "terabyte"}, {"bit"}}},
      {"unit_money", {{"dollar", "usd", "$"}, {"euro", "eur", "€"}, {"pound_sterling", "gbp",
                      "£"}, {"yen", "jpy"}, {"rupee", "inr"}, {"bitcoin", "btc"}}},
      {"unit_speed", {{"mph"}, {"kph", "kmh"}, {"knot"}}},
      {"unit_energy", {{"calorie", "kcal", "cal"}, {"joule", "kj"}, {"watt", "w"},
                       {"kwh"}, {"volt", "v"}, {"amp", "ampere"}}},
      {"percent", {{"percent", "%", "percentage"}, {"fraction_word"}}},
      // Closed sets of names.
      {"weekday", {{"monday"}, {"tuesday"}, {"wednesday"}, {"thursday"}, {"friday"},
                   {"saturday"}, {"sunday"}, {"weekend"}, {"weekday"}}},
      {"month_name", {{"january"}, {"february"}, {"march"}, {"april"}, {"may_month"}, {"june"},
                      {"july"}, {"august"}, {"september"}, {"october"}, {"november"},
                      {"december"}}},
      {"season", {{"spring"}, {"summer"}, {"autumn", "fall"}, {"winter"}}},
      {"relative_day", {{"today", "tonight"}, {"tomorrow"}, {"yesterday"}}},
      {"day_part", {{"morning", "breakfast"}, {"afternoon", "lunch", "noon"},
                    {"evening", "dinner"}, {"night", "midnight", "overnight"}}},
      {"colour", {{"red"}, {"blue"}, {"green"}, {"yellow"}, {"black"}, {"white"}, {"orange"},
                  {"purple"}, {"pink"}, {"brown"}, {"gray", "grey"}}},
      {"compass", {{"north", "northern"}, {"south", "southern"}, {"east", "eastern"},
                   {"west", "western"}}},
      {"family", {{"mother", "mom", "mum"}, {"father", "dad"}, {"brother"}, {"sister"},
                  {"son"}, {"daughter"}, {"wife"}, {"husband"}, {"grandmother", "grandma"},
                  {"grandfather", "grandpa"}, {"aunt"}, {"uncle"}, {"cousin"}}},
      {"language", {{"python"}, {"java"}, {"javascript", "js"}, {"typescript", "ts"},
                    {"golang"}, {"rust"}, {"ruby"}, {"php"}, {"swift"}, {"kotlin"},
                    {"scala"}, {"perl"}, {"bash", "shell"}, {"sql"}, {"haskell"}, {"c++", "cpp"},
                    {"c#", "csharp"}, {"html"}, {"css"}, {"excel"}, {"matlab"}, {"lua"}}},
      {"os", {{"windows"}, {"linux", "ubuntu", "debian"}, {"mac", "macos", "osx"},
              {"android"}, {"ios", "iphone"}}},
      {"meal_drink", {{"coffee"}, {"tea"}, {"beer"}, {"wine"}, {"water"}, {"milk"},
                      {"juice"}}},
      {"animal", {{"dog", "puppy"}, {"cat", "kitten"}, {"horse"}, {"bird"}, {"fish"},
                  {"rabbit"}, {"hamster"}, {"cow"}, {"pig"}, {"sheep"}, {"chicken"}}},
  };
  return *classes;
}

// surface -> (class index, member index), built once.
const absl::flat_hash_map<std::string, std::pair<int, int>>& ClassIndex() {
  static const auto* index = [] {
    auto* m = new absl::flat_hash_map<std::string, std::pair<int, int>>;
    const auto& classes = Classes();
    for (int c = 0; c < static_cast<int>(classes.size()); ++c) {
      for (int k = 0; k < static_cast<int>(classes[c].members.size()); ++k) {
        for (const char* s : classes[c].members[k]) m->emplace(s, std::make_pair(c, k));
      }
    }
    return m;
  }();
  return *index;
}

const absl::flat_hash_set<std::string>& Set(std::initializer_list<const char*> words) {
  auto* s = new absl::flat_hash_set<std::string>;
  for (const char* w : words) s->insert(w);
  return *s;
}

const absl::flat_hash_set<std::string>& NegationWords() {
  static const auto& s = Set({"not", "no", "never", "without", "none", "nobody", "nothing",
                              "nowhere", "neither", "nor", "cannot", "dont", "doesnt", "didnt",
                              "isnt", "arent", "wasnt", "werent", "cant", "wont", "shouldnt",
                              "wouldnt", "couldnt", "havent", "hasnt", "hadnt", "mustnt"});
  return s;
}

const absl::flat_hash_set<std::string>& StopWords() {
  static const auto& s = Set(
      {"a", "an", "the", "my", "your", "his", "her", "its", "our", "their", "this", "that",
       "these", "those", "some", "any", "i", "you", "me", "we", "us", "it", "he", "she", "they",
       "them", "is", "are", "was", "were", "be", "been", "being", "am_", "do", "does", "did",
       "of", "in", "on_", "for", "with", "at", "by", "about", "how", "what", "whats", "which",
       "who", "why", "when", "where", "can", "could", "should", "would", "will", "shall", "may",
       "might", "must", "please", "and", "or", "if", "so", "to", "from", "into", "onto", "than",
       "there", "here", "get", "have", "has", "had", "just", "way", "best_", "tell", "give",
       "explain", "want", "need", "know", "like", "one", "thing", "things", "much", "many",
       "very", "really", "also", "as", "up_", "it's", "i'm", "let", "lets", "let's", "make",
       "use", "using", "go", "there's", "hows", "s", "t", "is_it", "ok", "okay", "hi", "hello",
       "hey", "thanks", "thank"});
  return s;
}

const absl::flat_hash_set<std::string>& DirectionWords() {
  static const auto& s =
      Set({"from", "to", "into", "onto", "than", "towards", "toward", "in"});
  return s;
}

const absl::flat_hash_set<std::string>& SymmetricMarkers() {
  static const auto& s = Set({"and", "or", "vs", "versus", "plus", "times", "+", "*", "x", "×",
                              "&", "compare", "compared", "comparing", "comparison", "between",
                              "difference", "differences", "both", "either", "with", "sum",
                              "product", "multiply", "multiplied", "add", "same", "equal"});
  return s;
}

const absl::flat_hash_map<std::string, int>& SmallNumberWords() {
  static const auto* m = new absl::flat_hash_map<std::string, int>{
      {"zero", 0},      {"one", 1},        {"two", 2},       {"three", 3},     {"four", 4},
      {"five", 5},      {"six", 6},        {"seven", 7},     {"eight", 8},     {"nine", 9},
      {"ten", 10},      {"eleven", 11},    {"twelve", 12},   {"thirteen", 13}, {"fourteen", 14},
      {"fifteen", 15},  {"sixteen", 16},   {"seventeen", 17}, {"eighteen", 18},
      {"nineteen", 19}, {"twenty", 20},    {"thirty", 30},   {"forty", 40},    {"fifty", 50},
      {"sixty", 60},    {"seventy", 70},   {"eighty", 80},   {"ninety", 90},   {"dozen", 12},
      {"couple", 2},    {"pair", 2},       {"single", 1},    {"double", 2},    {"triple", 3},
      {"twice", 2},     {"thrice", 3},     {"once", 1},
  };
  return *m;
}

const absl::flat_hash_map<std::string, int64_t>& ScaleWords() {
  static const auto* m = new absl::flat_hash_map<std::string, int64_t>{
      {"hundred", 100}, {"thousand", 1000}, {"million", 1000000}, {"billion", 1000000000}};
  return *m;
}

const absl::flat_hash_map<std::string, int>& OrdinalWords() {
  static const auto* m = new absl::flat_hash_map<std::string, int>{
      {"second_", 2}, {"third", 3},   {"fourth", 4}, {"fifth", 5},  {"sixth", 6},
      {"seventh", 7}, {"eighth", 8},  {"ninth", 9},  {"tenth", 10}, {"eleventh", 11},
      {"twelfth", 12}, {"twentieth", 20}, {"hundredth", 100}};
  return *m;
}

// ---- Tokenization --------------------------------------------------------------------------

bool IsWordByte(unsigned char c) { return std::isalnum(c) || c == '\'' || c >= 0x80; }

std::string FormatNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

// "1,000" -> "1000", "2.50" -> "2.5", "3:00" kept as a time. nullopt if not a number.
std::optional<std::string> NormalizeDigits(std::string_view w) {
  if (w.empty() || !std::isdigit(static_cast<unsigned char>(w[0]))) return std::nullopt;
  if (w.find(':') != std::string_view::npos) {
    for (char c : w) {
      if (!std::isdigit(static_cast<unsigned char>(c)) && c != ':') return std::nullopt;
    }
    // "3:00" and "3:0" are the same time; strip a ":00" tail so "3pm" == "3:00pm".
    std::string s(w);
    while (EndsWith(s, ":00")) s.resize(s.size() - 3);
    return s;
  }
  std::string digits;
  for (char c : w) {
    if (c == ',') continue;
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.') return std::nullopt;
    digits.push_back(c);
  }
  if (std::count(digits.begin(), digits.end(), '.') > 1) return digits;  // a version, verbatim
  return FormatNumber(std::strtod(digits.c_str(), nullptr));
}

struct Token {
  std::string lower;
  bool capitalized = false;   // first letter upper case
  bool inner_upper = false;   // an upper-case letter after the first (iPhone, McDonald)
  bool all_upper = false;     // two or more letters, all upper case
  bool sentence_initial = false;
};

// Lookup with light inflection stripping: exact, then -s/-es/-ed/-d/-ing/-ing+e/-ies->y.
std::optional<std::pair<int, int>> LookupClass(const std::string& w) {
  const auto& index = ClassIndex();
  auto find = [&](const std::string& s) -> std::optional<std::pair<int, int>> {
    auto it = index.find(s);
    if (it == index.end()) return std::nullopt;
    return it->second;
  };
  if (auto r = find(w)) return r;
  if (w.size() <= 3) return std::nullopt;
  auto strip = [&](std::string_view suffix, std::string_view add) -> std::optional<std::pair<int, int>> {
    if (!EndsWith(w, suffix)) return std::nullopt;
    return find(w.substr(0, w.size() - suffix.size()) + std::string(add));
  };
  for (auto [suffix, add] : {std::pair<std::string_view, std::string_view>{"ies", "y"},
                             {"es", ""}, {"s", ""}, {"ed", ""}, {"ed", "e"}, {"d", ""},
                             {"ing", ""}, {"ing", "e"}, {"er", ""}, {"ers", ""}}) {
    if (auto r = strip(suffix, add)) return r;
  }
  return std::nullopt;
}

bool IsIdentifier(std::string_view s) {
  if (s.size() < 3) return false;
  if (StartsWith(s, "--") || EndsWith(s, "()") ||
      s.find("::") != std::string_view::npos || s.find("->") != std::string_view::npos) {
    return true;
  }
  if (s[0] == '/' && s.size() > 1 && std::isalnum(static_cast<unsigned char>(s[1]))) return true;
  bool has_alpha = false;
  for (char c : s) has_alpha |= std::isalpha(static_cast<unsigned char>(c)) != 0;
  if (!has_alpha) return false;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    const unsigned char p = s[i - 1], c = s[i], n = s[i + 1];
    if (c == '_' && std::isalnum(p) && std::isalnum(n)) return true;
    // dotted.names and file.ext, but not "e.g" or "3.5"
    if (c == '.' && std::isalpha(n) && std::isalnum(p) && i >= 2 && s.size() - i > 2) return true;
  }
  // camelCase: lower then upper inside, with a lower-case start (iPhone is an entity instead).
  for (size_t i = 1; i < s.size(); ++i) {
    if (std::islower(static_cast<unsigned char>(s[i - 1])) &&
        std::isupper(static_cast<unsigned char>(s[i])) &&
        std::islower(static_cast<unsigned char>(s[0])) && i > 1) {
      return true;
    }
  }
  return false;
}

// Quoted spans: "...", `...`, “...”, and '...' whose quotes are not apostrophes.
std::vector<std::string> QuotedSpans(std::string_view text) {
  std::vector<std::string> out;
  auto scan = [&](std::string_view open, std::string_view close, bool word_boundaries) {
    size_t pos = 0;
    while (true) {
      size_t a = text.find(open, pos);
      if (a == std::string_view::npos) return;
      if (word_boundaries && a > 0 && IsWordByte(static_cast<unsigned char>(text[a - 1]))) {
        pos = a + open.size();
        continue;
      }
      size_t b = text.find(close, a + open.size());
      while (word_boundaries && b != std::string_view::npos && b + 1 < text.size() &&
             IsWordByte(static_cast<unsigned char>(text[b + 1]))) {
        b = text.find(close, b + 1);
      }
      if (b == std::string_view::npos) return;
      std::string span(text.substr(a + open.size(), b - a - open.size()));
      if (!span.empty() && span.size() < 200) out.push_back(Lower(span));
      pos = b + close.size();
    }
  };
  scan("\"", "\"", false);
  scan("`", "`", false);
  scan("'", "'", true);
  return out;
}

constexpr std::string_view kStripChars = "\"'`()[]{}<>,;:!?.";

// Splits a whitespace-free chunk into word and number tokens and single symbol tokens.
std::vector<std::string> SplitChunk(std::string_view chunk) {
  std::vector<std::string> out;
  auto at = [&](size_t j) { return static_cast<unsigned char>(chunk[j]); };
  size_t i = 0;
  while (i < chunk.size()) {
    const unsigned char c = at(i);
    if (std::isdigit(c)) {
      // 1,000.5 or 3:30, then a letter suffix stays attached ("3rd", "5km", "3pm").
      size_t j = i;
      while (j < chunk.size() &&
             (std::isdigit(at(j)) || ((at(j) == '.' || at(j) == ',' || at(j) == ':') &&
                                      j + 1 < chunk.size() && std::isdigit(at(j + 1))))) {
        ++j;
      }
      while (j < chunk.size() && std::isalpha(at(j))) ++j;
      out.emplace_back(chunk.substr(i, j - i));
      i = j;
    } else if (std::isalpha(c) || c >= 0x80) {
      // Letters and digits together ("h100", "don't"), then "c++" / "c#".
      size_t j = i;
      while (j < chunk.size() && (std::isalnum(at(j)) || at(j) >= 0x80 || at(j) == '\'')) ++j;
      while (j < chunk.size() && (at(j) == '+' || at(j) == '#') && j - i <= 2) ++j;
      out.emplace_back(chunk.substr(i, j - i));
      i = j;
    } else {
      if (std::string_view("+*/=%$-&").find(static_cast<char>(c)) != std::string_view::npos) {
        out.emplace_back(1, static_cast<char>(c));
      }
      ++i;
    }
  }
  return out;
}

// Curly quotes to ASCII, so "don’t" and "don't" (and “x” and "x") read the same.
std::string NormalizeQuotes(std::string_view text) {
  std::string s(text);
  for (auto [curly, ascii] : {std::pair<std::string_view, std::string_view>{"\xE2\x80\x98", "'"},
                              {"\xE2\x80\x99", "'"}, {"\xE2\x80\x9C", "\""},
                              {"\xE2\x80\x9D", "\""}}) {
    size_t pos = 0;
    while ((pos = s.find(curly, pos)) != std::string::npos) s.replace(pos, 3, ascii);
  }
  return s;
}

}  // namespace

// ---- Extraction ----------------------------------------------------------------------------

GuardFeatures FalseHitGuard::Extract(std::string_view raw) {
  GuardFeatures f;
  f.text = std::string(raw);
  const std::string text = NormalizeQuotes(raw);
  f.lower_text = Lower(text);
  f.quoted = QuotedSpans(text);

  // Pass 1: chunks -> tokens (with case flags) and identifiers.
  std::vector<Token> tokens;
  bool sentence_start = true;
  size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
    size_t end = pos;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
    if (end == pos) break;
    std::string_view chunk(text.data() + pos, end - pos);
    pos = end;
    const bool ends_sentence = chunk.back() == '.' || chunk.back() == '?' ||
                               chunk.back() == '!' || chunk.back() == ':';
    size_t a = 0, b = chunk.size();
    while (a < b && kStripChars.find(chunk[a]) != std::string_view::npos) ++a;
    while (b > a && kStripChars.find(chunk[b - 1]) != std::string_view::npos) --b;
    // Keep a call's "()" that the strip ate.
    std::string_view core = chunk.substr(a, b - a);
    if (StartsWith(chunk.substr(b), "()")) core = chunk.substr(a, b - a + 2);
    if (IsIdentifier(core)) {
      f.words.push_back(Lower(core));
      // "f()" and "f" name the same thing.
      f.identifiers.push_back(Lower(EndsWith(core, "()") ? core.substr(0, core.size() - 2) : core));
      f.tokens.insert(Lower(core));
      ++f.num_content_words;
      sentence_start = ends_sentence;
      continue;
    }
    bool first_in_chunk = true;
    for (std::string& piece : SplitChunk(core)) {
      Token t;
      int letters = 0, uppers = 0;
      for (size_t i = 0; i < piece.size(); ++i) {
        const unsigned char c = piece[i];
        if (!std::isalpha(c)) continue;
        ++letters;
        if (std::isupper(c)) {
          ++uppers;
          if (i == 0) t.capitalized = true;
          else t.inner_upper = true;
        }
      }
      t.all_upper = letters >= 2 && uppers == letters;
      t.sentence_initial = sentence_start && first_in_chunk;
      t.lower = Lower(piece);
      if (EndsWith(t.lower, "'s")) t.lower.resize(t.lower.size() - 2);
      if (EndsWith(t.lower, "'")) t.lower.pop_back();
      first_in_chunk = false;
      if (!t.lower.empty()) tokens.push_back(std::move(t));
    }
    sentence_start = ends_sentence;
  }

  // Title Case or SHOUTING makes capitals meaningless: then only acronyms-with-digits count.
  // Sentence-initial words are capitalized anyway; among the others, more than two thirds
  // capitalized (with at least three) reads as Title Case.
  int words = 0, capitalized = 0;
  for (const Token& t : tokens) {
    if (!std::isalpha(static_cast<unsigned char>(t.lower[0])) || t.sentence_initial) continue;
    ++words;
    if (t.capitalized) ++capitalized;
  }
  const bool caps_informative = words < 3 || capitalized * 3 <= words * 2;

  const auto& neg = NegationWords();
  const auto& stop = StopWords();
  const auto& small = SmallNumberWords();
  const auto& scale = ScaleWords();
  const auto& ordinal = OrdinalWords();

  // Pass 2: features.
  std::optional<int64_t> pending;  // a number being spelled out ("twenty five thousand")
  int64_t pending_total = 0;
  auto flush = [&] {
    if (!pending) return;
    const std::string n = FormatNumber(static_cast<double>(pending_total + *pending));
    f.numbers.push_back(n);
    f.ordered_numbers.push_back(n);
    pending.reset();
    pending_total = 0;
  };
  auto next_is_number_word = [&](size_t i) {
    return i + 1 < tokens.size() &&
           (small.contains(tokens[i + 1].lower) || scale.contains(tokens[i + 1].lower));
  };
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    const std::string& w = t.lower;
    f.tokens.insert(w);
    // Numbers are compared by the numbers rule; in the word sequence they are one placeholder.
    if (std::isdigit(static_cast<unsigned char>(w[0])) || small.contains(w) ||
        scale.contains(w) || ordinal.contains(w)) {
      f.words.push_back("#");
    } else if (w != "a" && w != "an" && w != "the") {
      f.words.push_back(w);
    }
    if (SymmetricMarkers().contains(w)) f.has_symmetric_marker = true;

    // Spelled-out numbers.
    auto sm = small.find(w);
    auto sc = scale.find(w);
    const bool lone_one = (w == "one" || w == "single" || w == "once") && !pending &&
                          !next_is_number_word(i);
    const bool a_dozen = w == "dozen";
    if ((sm != small.end() && !lone_one) || (sc != scale.end() && (pending || a_dozen))) {
      if (sm != small.end()) {
        pending = pending.value_or(0) + sm->second;
      } else {
        const int64_t v = pending.value_or(1);
        if (sc->second >= 1000) {
          pending_total += v * sc->second;
          pending = 0;
        } else {
          pending = v * sc->second;
        }
      }
      continue;
    }
    if (sc != scale.end() && !pending) {  // "a hundred"
      pending = sc->second;
      continue;
    }
    if (w == "and" && pending && next_is_number_word(i)) continue;
    flush();

    if (auto it = ordinal.find(w); it != ordinal.end()) {
      f.numbers.push_back(absl::StrCat("#", it->second));
      f.ordered_numbers.push_back(f.numbers.back());
      ++f.num_content_words;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(w[0]))) {
      ++f.num_content_words;
      if (auto n = NormalizeDigits(w)) {
        f.numbers.push_back(*n);
        f.ordered_numbers.push_back(*n);
        continue;
      }
      // "1st", "5km", "3pm": digits then letters.
      size_t d = 0;
      while (d < w.size() && (std::isdigit(static_cast<unsigned char>(w[d])) || w[d] == '.' ||
                              w[d] == ',' || w[d] == ':')) {
        ++d;
      }
      const std::string suffix = w.substr(d);
      if (auto n = NormalizeDigits(w.substr(0, d))) {
        if (suffix == "st" || suffix == "nd" || suffix == "rd" || suffix == "th") {
          f.numbers.push_back(absl::StrCat("#", *n));
        } else {
          f.numbers.push_back(*n);
          if (auto cls = LookupClass(suffix)) f.class_members[cls->first] |= 1ull << cls->second;
        }
        f.ordered_numbers.push_back(f.numbers.back());
      }
      continue;
    }

    if (neg.contains(w) || EndsWith(w, "n't")) f.negation_parity ^= 1;

    if (auto cls = LookupClass(w)) f.class_members[cls->first] |= 1ull << cls->second;

    const bool is_alpha = std::isalpha(static_cast<unsigned char>(w[0])) != 0;
    bool has_digit = false;
    for (char c : w) has_digit |= std::isdigit(static_cast<unsigned char>(c)) != 0;
    const bool entity =
        is_alpha && w != "i" &&
        (has_digit || (caps_informative && ((t.all_upper && w.size() >= 2) || t.inner_upper ||
                                            (t.capitalized && !t.sentence_initial))));
    if (entity) f.entities.push_back(w);

    if (DirectionWords().contains(w)) {
      for (size_t j = i + 1; j < tokens.size(); ++j) {
        const std::string& o = tokens[j].lower;
        if (stop.contains(o) && !DirectionWords().contains(o)) continue;
        if (!DirectionWords().contains(o)) f.directed.emplace_back(w, o);
        break;
      }
    }
    if (!stop.contains(w) && !neg.contains(w) && is_alpha) ++f.num_content_words;
  }
  flush();
  std::sort(f.numbers.begin(), f.numbers.end());
  return f;
}

// ---- Comparison ----------------------------------------------------------------------------

namespace {

bool AllOccur(const std::vector<std::string>& items, const GuardFeatures& other,
              bool as_token) {
  for (const std::string& s : items) {
    if (as_token ? !other.tokens.contains(s)
                 : other.lower_text.find(s) == std::string::npos) {
      return false;
    }
  }
  return true;
}

// Items of `seq` that occur in `other`, first occurrences only, in order.
std::vector<std::string> SharedOrder(const std::vector<std::string>& seq,
                                     const std::vector<std::string>& other) {
  absl::flat_hash_set<std::string> in_other(other.begin(), other.end());
  absl::flat_hash_set<std::string> seen;
  std::vector<std::string> out;
  for (const std::string& s : seq) {
    if (in_other.contains(s) && seen.insert(s).second) out.push_back(s);
  }
  return out;
}

// "advantages" on one side and "disadvantages" on the other (and not on both).
bool PrefixNegated(const GuardFeatures& a, const GuardFeatures& b) {
  static constexpr std::string_view kPrefixes[] = {"un", "dis", "in", "im", "il", "ir",
                                                   "non", "de", "anti"};
  for (const std::string& t : a.tokens) {
    if (t.size() < 3 || b.tokens.contains(t)) continue;
    for (std::string_view p : kPrefixes) {
      const std::string negated = std::string(p) + t;
      if (b.tokens.contains(negated) && !a.tokens.contains(negated)) return true;
    }
  }
  return false;
}

// Same word up to a plural / verb ending ("tire"/"tires", "boil"/"boiling").
bool SameStem(const std::string& a, const std::string& b) {
  auto stem = [](std::string w) {
    for (std::string_view suffix : {"ing", "es", "ed", "s"}) {
      if (w.size() > suffix.size() + 2 && EndsWith(w, suffix)) {
        w.resize(w.size() - suffix.size());
        break;
      }
    }
    if (w.size() > 3 && w.back() == 'e') w.pop_back();
    return w;
  };
  return stem(a) == stem(b);
}

// Question auxiliaries that a rewording swaps freely ("how do I" / "how can I" / "how would I"):
// exchanging one for another is not the one-word change a minimal pair is about.
bool QuestionAuxiliary(const std::string& w) {
  static const absl::flat_hash_set<std::string> kAuxiliaries = {
      "do", "does", "can", "could", "would", "should", "may", "might", "shall", "will"};
  return kAuxiliaries.contains(w);
}

// The word sequences differ in exactly one position (and not by an inflection or a question
// auxiliary).
bool MinimalPair(const GuardFeatures& a, const GuardFeatures& b) {
  if (a.words.size() != b.words.size()) return false;
  int diffs = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.words.size(); ++i) {
    if (a.words[i] != b.words[i]) {
      ++diffs;
      at = i;
    }
  }
  if (diffs != 1 || SameStem(a.words[at], b.words[at])) return false;
  if (QuestionAuxiliary(a.words[at]) && QuestionAuxiliary(b.words[at])) return false;
  // Two spellings of one lexicon member ("km" / "kilometres") are not a difference.
  const auto ca = LookupClass(a.words[at]), cb = LookupClass(b.words[at]);
  return !(ca && cb && *ca == *cb);
}

bool DirectionSwapped(const GuardFeatures& a, const GuardFeatures& b) {
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> oa, ob;
  for (const auto& [d, o] : a.directed) oa[d].insert(o);
  for (const auto& [d, o] : b.directed) ob[d].insert(o);
  for (const auto& [d, objects_a] : oa) {
    auto it = ob.find(d);
    if (it == ob.end() || it->second == objects_a) continue;
    for (const std::string& o : objects_a) {
      if (!it->second.contains(o) && b.tokens.contains(o)) return true;
    }
    for (const std::string& o : it->second) {
      if (!objects_a.contains(o) && a.tokens.contains(o)) return true;
    }
  }
  return false;
}

}  // namespace

GuardDecision FalseHitGuard::Check(const GuardFeatures& q, const GuardFeatures& c,
                                   float similarity) const {
  auto reject = [](std::string reason) { return GuardDecision{false, std::move(reason)}; };
  if (q.numbers != c.numbers) return reject("numbers");
  if (q.negation_parity != c.negation_parity) return reject("negation");
  for (const auto& [cls, members] : q.class_members) {
    auto it = c.class_members.find(cls);
    if (it != c.class_members.end() && it->second != members) {
      return reject(absl::StrCat("class:", Classes()[cls].name));
    }
  }
  if (!AllOccur(q.entities, c, true) || !AllOccur(c.entities, q, true)) return reject("entity");
  if (!AllOccur(q.quoted, c, false) || !AllOccur(c.quoted, q, false)) return reject("quoted");
  if (!AllOccur(q.identifiers, c, false) || !AllOccur(c.identifiers, q, false)) {
    return reject("identifier");
  }
  if (DirectionSwapped(q, c)) return reject("direction");
  if (!q.has_symmetric_marker && !c.has_symmetric_marker &&
      SharedOrder(q.ordered_numbers, c.ordered_numbers) !=
          SharedOrder(c.ordered_numbers, q.ordered_numbers)) {
    return reject("order");
  }
  if (PrefixNegated(q, c) || PrefixNegated(c, q)) return reject("prefix");
  if (MinimalPair(q, c)) return reject("minimal-pair");
  if (std::min(q.num_content_words, c.num_content_words) <= options_.short_text_max_words &&
      similarity < options_.short_text_min_similarity) {
    return reject("short");
  }
  return GuardDecision{};
}

GuardDecision FalseHitGuard::Check(std::string_view query, std::string_view cached,
                                   float similarity) const {
  return Check(Extract(query), Extract(cached), similarity);
}

}  // namespace saola::cache

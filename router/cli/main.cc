// saola-router: the public front door of a Saola cluster.
//
//   saola-router serve --workers HOST:PORT[,...] [--port N] [--metrics-port M] ...
//
// `saola-router serve --help` lists every flag.
#include <cstdio>
#include <string>
#include <vector>

#include "router/cli/serve_command.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs("usage: saola-router serve --workers HOST:PORT[,...] [flags]\n"
               "       saola-router serve --help\n",
               args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "serve") {
    return saola::router::RunServe(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  std::fprintf(stderr, "saola-router: unknown command '%s' (try: serve)\n", args[0].c_str());
  return 2;
}

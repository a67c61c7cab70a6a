// A plain main() for the fuzz targets: runs LLVMFuzzerTestOneInput once on every file named on the
// command line or found (recursively) in a directory named there, so the committed corpus and the
// regression inputs are replayed by ctest without libFuzzer. A crash, a sanitizer report or an escaped
// exception fails the run; a missing directory counts as empty (regressions/<target> may not exist).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

int run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 1;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::fprintf(stderr, "running %s (%zu bytes)\n", path.c_str(), bytes.size());
  // A copy in its own allocation, so AddressSanitizer sees reads past the end as libFuzzer would.
  std::vector<std::uint8_t> input(bytes.begin(), bytes.end());
  std::uint8_t* data = input.empty() ? nullptr : input.data();
  LLVMFuzzerTestOneInput(data, input.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  int failures = 0;
  std::size_t inputs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path root(argv[i]);
    std::error_code error;
    if (std::filesystem::is_directory(root, error)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& file : files) {
        failures += run_file(file);
        ++inputs;
      }
    } else if (std::filesystem::exists(root, error)) {
      failures += run_file(root);
      ++inputs;
    } else {
      std::fprintf(stderr, "%s does not exist; nothing to replay there\n", root.c_str());
    }
  }
  std::fprintf(stderr, "replayed %zu input(s), %d unreadable\n", inputs, failures);
  return failures == 0 ? 0 : 1;
}

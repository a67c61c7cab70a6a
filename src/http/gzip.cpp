#include "http/gzip.hpp"

#include <algorithm>
#include <array>

#include <zlib.h>

#include "p2p/http/client.hpp"
#include "p2p/util/text.hpp"

namespace p2p::http {

namespace {

using Kind = FetchError::Kind;
using util::iequals;

std::string_view trim_blanks(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

bool is_gzip(std::string_view content_encoding) {
  const auto value = trim_blanks(content_encoding);
  return iequals(value, "gzip") || iequals(value, "x-gzip");
}

// Inflates a gzip body (one or more members), refusing to produce more than `limit` bytes so a small
// compressed body cannot expand without bound.
std::string gunzip(std::string_view input, std::size_t limit, const std::string& where) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    throw FetchError(Kind::kProtocol, where + ": zlib could not be initialised to decode the gzip response");
  }
  struct End {
    z_stream& zs;
    ~End() { inflateEnd(&zs); }
  } end{zs};
  std::string output;
  std::array<unsigned char, 64 * 1024> chunk{};
  std::size_t consumed = 0;  // bytes of input handed to zlib
  for (;;) {
    if (zs.avail_in == 0 && consumed < input.size()) {
      const std::size_t take = std::min<std::size_t>(input.size() - consumed, 1U << 30);
      // zlib's next_in is not const but inflate does not write through it.
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data() + consumed));
      zs.avail_in = static_cast<uInt>(take);
      consumed += take;
    }
    zs.next_out = chunk.data();
    zs.avail_out = static_cast<uInt>(chunk.size());
    const int result = inflate(&zs, Z_NO_FLUSH);
    const std::size_t produced = chunk.size() - zs.avail_out;
    if (produced > limit - output.size()) {
      throw FetchError(Kind::kTooLarge, where + ": the gzip-decoded response is larger than the limit of " +
                                            std::to_string(limit) + " bytes");
    }
    output.append(reinterpret_cast<const char*>(chunk.data()), produced);
    const bool input_left = zs.avail_in > 0 || consumed < input.size();
    if (result == Z_STREAM_END) {
      if (!input_left) return output;
      inflateReset(&zs);  // another gzip member follows
      continue;
    }
    if (result == Z_OK) continue;
    if (result == Z_BUF_ERROR && !input_left) {
      throw FetchError(Kind::kProtocol, where + ": the gzip response body is truncated");
    }
    if (result == Z_BUF_ERROR) continue;
    throw FetchError(Kind::kProtocol, where + ": the response body is not valid gzip" +
                                          (zs.msg != nullptr ? std::string(" (") + zs.msg + ")" : std::string()));
  }
}

}  // namespace p2p::http

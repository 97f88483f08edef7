#include "base/option_table.h"

#include <cmath>
#include <sstream>

namespace edgesync {

std::string OptionDefaultText(OptionKind kind, const OptionValue& value) {
  switch (kind) {
    case OptionKind::kString: {
      const std::string& s = std::get<std::string>(value);
      return s.empty() ? "(none)" : "\"" + s + "\"";
    }
    case OptionKind::kInt:
    case OptionKind::kSize: {
      const int64_t n = std::get<int64_t>(value);
      if (kind == OptionKind::kSize && n > 0 && n % (1 << 20) == 0) return "\"" + std::to_string(n >> 20) + "MiB\"";
      if (kind == OptionKind::kSize && n > 0 && n % 1024 == 0) return "\"" + std::to_string(n >> 10) + "KiB\"";
      return std::to_string(n);
    }
    case OptionKind::kStringList: {
      std::string out;
      for (const std::string& s : std::get<std::vector<std::string>>(value)) {
        out += (out.empty() ? "\"" : ", \"") + s + "\"";
      }
      return "[" + out + "]";
    }
    case OptionKind::kDuration: {
      const double secs = std::get<double>(value);
      std::ostringstream s;
      if (secs >= 86400 && std::fmod(secs, 86400) == 0) {
        s << "\"" << secs / 86400 << "d\"";
      } else {
        s << "\"" << secs << "s\"";
      }
      return s.str();
    }
    case OptionKind::kTable:
      break;
  }
  return "";
}

}  // namespace edgesync

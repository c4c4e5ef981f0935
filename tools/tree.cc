#include "tools/tree.h"

#include <cstdlib>

#include <boost/filesystem/operations.hpp>

#include "common/io.h"

namespace crfs::tool {

namespace fs = boost::filesystem;

fs::path mount_root() {
    const char* root = std::getenv("CRFS_ROOT");
    return root && *root ? fs::path(root) : fs::path("/crfs");
}

Status tree_mounted() {
    boost::system::error_code ec;
    if (fs::exists(mount_root() / "self" / "reason", ec)) return {};
    return make_error(ENOENT, "no crfs tree at " + mount_root().string() +
                                  " (is crfsd running? $CRFS_ROOT names another mount point)");
}

fs::path tree_path(const std::string& name, const char* file) {
    return mount_root() / name / file;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) out.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

Result<std::vector<std::string>> read_reasons(pid_t pid) {
    auto text = read_file(tree_path(std::to_string(pid), "reason").string());
    if (!text) return std::unexpected(text.error());
    return lines_of(*text);
}

Result<std::string> read_status(const std::string& slot) {
    auto text = read_file(tree_path(slot, "status").string());
    if (!text) return std::unexpected(text.error());
    while (!text->empty() && text->back() == '\n') text->pop_back();
    return *text;
}

}  // namespace crfs::tool

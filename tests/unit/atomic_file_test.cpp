// AtomicFile / AtomicDir: unique temporaries never follow links, the destination is checked again
// at rename time, dead processes' temporaries are cleaned, concurrent writers never mix.
#include "moeq/base/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "moeq/base/file_util.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;

void Put(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}
std::string Get(const std::string& path) {
  auto r = ReadFile(path);
  return r.ok() ? *r : "<unreadable>";
}
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}
/// A pid that certainly belonged to a process that has exited (reaped child).
pid_t DeadPid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st;
  ::waitpid(p, &st, 0);
  return p;
}

TEST(AtomicFile, WritesAndRenamesLeavingNoTemporary) {
  test::ScopedTempDir dir;
  const std::string out = dir.Join("out.json");
  ASSERT_TRUE(WriteFileAtomic(out, "{\"a\":1}\n", {}).ok());
  EXPECT_EQ(Get(out), "{\"a\":1}\n");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out.json"});
}

TEST(AtomicFile, TemporaryNameIsMoeqsWithPidInTheSameDirectory) {
  test::ScopedTempDir dir;
  auto f = AtomicFile::Create(dir.Join("x.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const std::string name = fs::path((*f)->temp_path()).filename().string();
  EXPECT_EQ(fs::path((*f)->temp_path()).parent_path().string(), dir.path());
  EXPECT_EQ(name.rfind(".x.gguf.moeq-tmp-" + std::to_string(::getpid()) + "-", 0), 0u) << name;
  EXPECT_FALSE(fs::exists(dir.Join("x.gguf")));
}

TEST(AtomicFile, LegacyTmpSymlinkIsNotFollowed) {
  // Before AtomicFile, writers opened "<out>.tmp" with O_TRUNC and followed a planted link.
  test::ScopedTempDir dir;
  const std::string victim = dir.Join("victim.bin");
  Put(victim, "precious");
  fs::create_symlink(victim, dir.Join("out.json.tmp"));
  ASSERT_TRUE(WriteFileAtomic(dir.Join("out.json"), "new", {}).ok());
  EXPECT_EQ(Get(victim), "precious");
  EXPECT_EQ(Get(dir.Join("out.json")), "new");
}

TEST(AtomicFile, DestinationSymlinkIsReplacedNotItsTarget) {
  test::ScopedTempDir dir;
  const std::string victim = dir.Join("victim.bin");
  Put(victim, "precious");
  fs::create_symlink(victim, dir.Join("out.json"));
  ASSERT_TRUE(WriteFileAtomic(dir.Join("out.json"), "new", {.overwrite = true}).ok());
  EXPECT_EQ(Get(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(dir.Join("out.json")));
  EXPECT_EQ(Get(dir.Join("out.json")), "new");
}

TEST(AtomicFile, DestinationThatAppearsMeanwhileIsNotReplacedWithoutOverwrite) {
  test::ScopedTempDir dir;
  const std::string out = dir.Join("out.json");
  auto f = AtomicFile::Create(out);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Write("mine").ok());
  Put(out, "theirs");  // another process finished first
  const Status s = (*f)->Commit();
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_NE(s.message().find(out), std::string::npos);
  f->reset();
  EXPECT_EQ(Get(out), "theirs");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out.json"});
}

TEST(AtomicFile, OverwriteReplacesAndAbandonRemovesTemporary) {
  test::ScopedTempDir dir;
  const std::string out = dir.Join("out.json");
  Put(out, "old");
  {
    auto f = AtomicFile::Create(out, {.overwrite = true});
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Write("half").ok());
  }  // abandoned: no commit
  EXPECT_EQ(Get(out), "old");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out.json"});
  ASSERT_TRUE(WriteFileAtomic(out, "new", {.overwrite = true}).ok());
  EXPECT_EQ(Get(out), "new");
}

TEST(AtomicFile, ErrorsNameTheFileAndTheSystemError) {
  test::ScopedTempDir dir;
  const Status s = WriteFileAtomic(dir.Join("missing-dir/out.json"), "x", {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing-dir"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("No such file or directory"), std::string::npos) << s.message();
}

TEST(AtomicFile, StaleTemporariesOfDeadProcessesAreRemovedLiveOnesKept) {
  test::ScopedTempDir dir;
  const pid_t dead = DeadPid();
  const std::string dead_file = ".out.gguf.moeq-tmp-" + std::to_string(dead) + "-0123456789abcdef";
  const std::string dead_dir = ".model.moeq-tmp-" + std::to_string(dead) + "-00000000000000aa";
  const std::string legacy_dir = ".model.tmp-" + std::to_string(dead) + "-0badf00d";
  const std::string live_file =
      ".out.gguf.moeq-tmp-" + std::to_string(::getppid()) + "-0123456789abcdef";
  const std::string user_file = ".profile.tmp";  // not moeq's: never touched
  Put(dir.Join(dead_file), "partial");
  fs::create_directory(dir.Join(dead_dir));
  Put(dir.Join(dead_dir) + "/model.safetensors", "partial");
  fs::create_directory(dir.Join(legacy_dir));
  Put(dir.Join(live_file), "in progress");
  Put(dir.Join(user_file), "user");
  ASSERT_TRUE(WriteFileAtomic(dir.Join("other.json"), "{}", {}).ok());
  EXPECT_EQ(Entries(dir.path()), (std::vector<std::string>{live_file, user_file, "other.json"}));
}

TEST(AtomicFile, StaleTemporarySymlinkIsRemovedNotFollowed) {
  test::ScopedTempDir dir;
  fs::create_directory(dir.Join("keep"));
  Put(dir.Join("keep/data"), "precious");
  const std::string link = ".m.moeq-tmp-" + std::to_string(DeadPid()) + "-0000000000000001";
  fs::create_directory_symlink(dir.Join("keep"), dir.Join(link));
  EXPECT_EQ(RemoveStaleTemporaries(dir.path()), 1);
  EXPECT_EQ(Get(dir.Join("keep/data")), "precious");
}

TEST(AtomicFile, ConcurrentWritersEachCompleteLastRenameWins) {
  test::ScopedTempDir dir;
  const std::string out = dir.Join("out.bin");
  const int kWriters = 6;
  std::vector<std::string> payloads;
  for (int i = 0; i < kWriters; ++i)
    payloads.push_back(std::string(1 << 20, static_cast<char>('a' + i)));
  for (int round = 0; round < 5; ++round) {
    std::vector<std::thread> th;
    std::vector<int> ok(kWriters, 0);
    for (int i = 0; i < kWriters; ++i) {
      th.emplace_back([&, i] {
        auto f = AtomicFile::Create(out, {.overwrite = true});
        if (!f.ok()) return;
        for (size_t off = 0; off < payloads[i].size(); off += 4096) {
          if (!(*f)->Write(std::string_view(payloads[i]).substr(off, 4096)).ok()) return;
        }
        ok[i] = (*f)->Commit().ok();
      });
    }
    for (auto& t : th) t.join();
    for (int i = 0; i < kWriters; ++i) EXPECT_TRUE(ok[i]) << i;
    const std::string got = Get(out);
    EXPECT_NE(std::find(payloads.begin(), payloads.end(), got), payloads.end())
        << "a mix of writers";
    EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out.bin"});
  }
}

TEST(AtomicDir, CommitsSwapsWithOverwriteAndRefusesWithout) {
  test::ScopedTempDir dir;
  const std::string out = dir.Join("model");
  {
    auto d = AtomicDir::Create(out);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    Put((*d)->temp_path() + "/a.txt", "one");
    EXPECT_FALSE(fs::exists(out));
    ASSERT_TRUE((*d)->Commit().ok());
  }
  EXPECT_EQ(Get(out + "/a.txt"), "one");
  {
    auto d = AtomicDir::Create(out);
    ASSERT_TRUE(d.ok());
    Put((*d)->temp_path() + "/b.txt", "two");
    EXPECT_EQ((*d)->Commit().code(), StatusCode::kAlreadyExists);
  }
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"model"});
  EXPECT_EQ(Entries(out), std::vector<std::string>{"a.txt"});
  {
    auto d = AtomicDir::Create(out + "/", {.overwrite = true});
    ASSERT_TRUE(d.ok());
    Put((*d)->temp_path() + "/b.txt", "two");
    ASSERT_TRUE((*d)->Commit().ok());
  }
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"model"});
  EXPECT_EQ(Entries(out), std::vector<std::string>{"b.txt"});
  {
    auto d = AtomicDir::Create(out, {.overwrite = true});
    ASSERT_TRUE(d.ok());
    Put((*d)->temp_path() + "/c.txt", "abandoned");
  }
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"model"});
}

TEST(AtomicDir, EmptyExistingDirectoryIsNotSilentlyReplaced) {
  // rename(2) replaces an empty directory; without --force that must still be refused.
  test::ScopedTempDir dir;
  const std::string out = dir.Join("model");
  auto d = AtomicDir::Create(out);
  ASSERT_TRUE(d.ok());
  fs::create_directory(out);
  EXPECT_EQ((*d)->Commit().code(), StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace moeq

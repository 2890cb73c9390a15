#include "assets/assets.h"

namespace jobstate::assets {

const Asset* find(std::string_view url) {
  if (url == "/ui" || url == "/ui/") url = "/ui/index.html";
  for (const Asset& a : all())
    if (a.url == url) return &a;
  return nullptr;
}

}  // namespace jobstate::assets

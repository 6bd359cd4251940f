# ocix_registry: the OCI distribution client (references, hosts.toml, auth,
# libcurl transport). Included by ocixcore/CMakeLists.txt.
pkg_check_modules(LIBCURL REQUIRED IMPORTED_TARGET libcurl)
# Debian's toml++ is a compiled shared library built with exceptions (the
# toml::v3::ex ABI); hosts.cc catches toml::parse_error so none escapes.
pkg_check_modules(TOMLPLUSPLUS REQUIRED IMPORTED_TARGET tomlplusplus)

add_library(ocix_registry STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/registry/reference.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/registry/hosts.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/registry/auth.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/registry/http.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/registry/client.cc
)
target_include_directories(ocix_registry PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(ocix_registry
  PUBLIC ocix_format
  PRIVATE ocix_warnings PkgConfig::LIBCURL PkgConfig::TOMLPLUSPLUS nlohmann_json::nlohmann_json
          OpenSSL::Crypto)

target_link_libraries(ocixcore INTERFACE ocix_registry)

# The thread-safe registry BlobReader for the chunk store (ocix_store's interface).
target_sources(ocix_registry PRIVATE ${CMAKE_CURRENT_LIST_DIR}/src/registry/blob_reader.cc)
target_link_libraries(ocix_registry PUBLIC ocix_store)

# ocix_store: the node-wide content-addressed chunk store that lazy mounts
# read through, and the BlobReader interface it fetches from. Depends on
# ocix_format only (never on ocix_registry or ocix_convert: the registry
# reader lives in ocix_registry, which depends on this interface instead).
if(NOT TARGET PkgConfig::LIBZSTD)
  pkg_check_modules(LIBZSTD REQUIRED IMPORTED_TARGET libzstd)
endif()
find_package(Threads REQUIRED)

add_library(ocix_store STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/store/blob_reader.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/store/chunk_store.cc
)
target_include_directories(ocix_store PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(ocix_store
  PUBLIC ocix_format Threads::Threads
  PRIVATE ocix_warnings PkgConfig::LIBZSTD)
target_link_libraries(ocixcore INTERFACE ocix_store)

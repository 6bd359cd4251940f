# ocix_convert: the OCIX layer format (TOC, footer) and the OCI -> OCIX
# converter. Depends on ocix_format only.
pkg_check_modules(LIBZSTD REQUIRED IMPORTED_TARGET libzstd)
add_library(ocix_convert STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/ocix_layer.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/layer_writer.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/convert.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/verify.cc
)
target_link_libraries(ocix_convert
  PUBLIC ocix_format
  PRIVATE ocix_warnings PkgConfig::LIBZSTD PkgConfig::LIBARCHIVE nlohmann_json::nlohmann_json)
target_link_libraries(ocixcore INTERFACE ocix_convert)

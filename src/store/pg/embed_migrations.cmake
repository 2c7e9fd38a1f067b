# Turns the numbered .sql files of a folder into a C++ table, so the binaries carry
# their schema and need no files at run time. Run by CMake at build time:
#   cmake -DSOURCE_DIR=... -DOUTPUT=... -P embed_migrations.cmake
file(GLOB files RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/*.sql")
list(SORT files)
set(body "// Generated from ${SOURCE_DIR} by embed_migrations.cmake. Do not edit.\n")
string(APPEND body "#include \"store/pg/migrate.hpp\"\n\nnamespace nimbus::pg {\n\n")
string(APPEND body "const std::vector<Migration>& embedded_migrations() {\n  static const std::vector<Migration> all = {\n")
foreach(f IN LISTS files)
  file(READ "${SOURCE_DIR}/${f}" sql)
  string(REGEX MATCH "^([0-9]+)_(.*)\\.sql$" _ "${f}")
  set(version "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  math(EXPR version "${version}")
  string(APPEND body "      {${version}, \"${name}\", R\"nimbus_sql(${sql})nimbus_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return all;\n}\n\n}  // namespace nimbus::pg\n")
file(WRITE "${OUTPUT}.tmp" "${body}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)

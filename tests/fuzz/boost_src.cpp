// Boost.JSON and Boost.URL compiled from their sources into the fuzz targets (instead
// of linking the prebuilt libraries), so their parsers are instrumented too and the
// fuzzer's coverage sees inside the JSON and query parsing it drives.
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>

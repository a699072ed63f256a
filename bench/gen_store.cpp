// caduceus_gen: fills a SQLite store with generated resources for the search benchmarks (bench/load/search.sh).
//
//   build/bin/caduceus_gen --db sqlite:/tmp/bench-1m.db [--resources 1000000] [--seed 42] [--threads 2]
//
// Every resource is written the way the server writes it: through Repository::update_async (the structural
// check, the search index values from SearchIndexer, meta stamped, one savepoint each inside the store's group
// commit), so the database is the server's own format and `caduceus serve --db sqlite:FILE --search-index true`
// serves it. Many writes are kept in flight at once so that each group commit is full.
//
// What it makes, deterministic from the seed (each patient's resources come from a generator seeded with the
// seed and the patient's number, so the content does not depend on the number of threads):
//   - Organizations (one per 10,000 resources), names "<City> <Kind>" unique, e.g. "Springfield General Hospital";
//   - Practitioners (one per 1,000 resources), with an NPI identifier and a name;
//   - per patient: 1 Patient, 10 Encounters and 10 Observations per Encounter, so 111 resources per patient:
//       Patient: MRN identifier, official name (family from a weighted list: "Smith" is 1 %, the only family name
//         starting with "smi"; no given name does), gender, birthDate uniform over 1920-01-01..2020-12-31,
//         address, telecom, generalPractitioner -> a Practitioner, managingOrganization -> an Organization;
//       Encounter: ambulatory, period increasing over the years, participant -> a Practitioner, serviceProvider;
//       Observation: one of 30 LOINC codes; every 5th of a patient's observations is 8310-5 (body temperature),
//         so 20 % of observations and exactly 20 per patient; 4548-4 (HbA1c) only for the 10 % of patients who
//         are "diabetic" (patient number % 10 == 3), 5 each; the others drawn uniformly from the 28 left.
//         subject -> the Patient, encounter -> its Encounter, performer -> its Practitioner, effectiveDateTime
//         increasing within the patient, valueQuantity with a UCUM unit.
//   - and, unless --synthea-copies 0, copies of the Synthea patient of bench/data/synthea-bundle.json (66
//     resources each, every id renamed per copy and every urn:uuid reference resolved to Type/id).
// It prints what it made and writes a manifest (--manifest, default: the database path + ".manifest") of
// `key value` lines with ids and names to query, read by bench/load/search.sh.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <semaphore>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/resources/structure_checker.hpp"

namespace {

using namespace caduceus;
using Rng = std::mt19937_64;

constexpr const char* kUsage =
    "Usage: caduceus_gen --db sqlite:PATH [OPTIONS]\n"
    "\n"
    "Fills a new SQLite store (the server's format, search index included) with generated resources.\n"
    "\n"
    "  --db URL              sqlite:PATH of a database that does not exist yet (required)\n"
    "  --resources N         about how many generated resources (default 1000000)\n"
    "  --seed S              seed of the generator (default 42)\n"
    "  --threads T           threads preparing writes (check, index extraction; default 2)\n"
    "  --in-flight K         writes submitted and not yet committed, at most (default 8192)\n"
    "  --group G             writes per commit (default 1024; --in-flight must be over 2 G)\n"
    "  --synthea FILE        the Synthea bundle to copy (default bench/data/synthea-bundle.json)\n"
    "  --synthea-copies C    copies of it, each with new ids (default 100; 0: none)\n"
    "  --manifest FILE       where to write ids to query (default PATH.manifest)\n"
    "  --sync-full           fsync every commit as the server does by default (default: synchronous=NORMAL)\n";

// Lists the generator draws from.
constexpr const char* kFamilies[] = {
    "Johnson",   "Williams", "Brown",    "Jones",    "Garcia",   "Miller", "Davis",     "Rodriguez", "Martinez",
    "Hernandez", "Lopez",    "Gonzalez", "Wilson",   "Anderson", "Thomas", "Taylor",    "Moore",     "Jackson",
    "Martin",    "Lee",      "Perez",    "Thompson", "White",    "Harris", "Sanchez",   "Clark",     "Ramirez",
    "Lewis",     "Robinson", "Walker",   "Young",    "Allen",    "King",   "Wright",    "Scott",     "Torres",
    "Nguyen",    "Hill",     "Flores",   "Green",    "Adams",    "Nelson", "Baker",     "Hall",      "Rivera",
    "Campbell",  "Mitchell", "Carter",   "Roberts",  "Kuhlman",  "Okafor", "Lindqvist", "Dubois",    "Rossi"};
constexpr const char* kGivenFemale[] = {"Mary",    "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara",  "Susan",
                                        "Jessica", "Sarah",    "Karen",    "Nancy", "Lisa",      "Betty",    "Margaret",
                                        "Sandra",  "Ashley",   "Kimberly", "Emily", "Donna",     "Michelle", "Elodie"};
constexpr const char* kGivenMale[] = {"James",  "Robert", "John",    "Michael",     "David",  "William", "Richard",
                                      "Joseph", "Thomas", "Charles", "Christopher", "Daniel", "Matthew", "Anthony",
                                      "Mark",   "Donald", "Steven",  "Paul",        "Andrew", "Joshua",  "Kenneth"};
constexpr const char* kCities[] = {"Springfield", "Riverton", "Fairview", "Georgetown", "Salem",
                                   "Madison",     "Clinton",  "Franklin", "Arlington",  "Ashland",
                                   "Burlington",  "Dover",    "Hudson",   "Kingston",   "Lexington",
                                   "Milton",      "Newport",  "Oxford",   "Quincy",     "Winchester"};
constexpr const char* kOrgKinds[] = {"General Hospital", "Medical Center", "Family Clinic", "Health Partners",
                                     "Community Hospital"};
constexpr const char* kStates[] = {"MA", "NY", "OH", "IL", "CA", "TX", "WA", "GA"};

struct Loinc {
  const char* code;
  const char* display;
  const char* unit;  // UCUM
  double low, high;
  bool vital;  // category vital-signs, else laboratory
};
// 30 codes. Index 0 (8310-5) and index 1 (4548-4) are placed by rule (see the header); the rest are drawn.
constexpr Loinc kLoinc[] = {
    {"8310-5", "Body temperature", "Cel", 36.0, 38.5, true},
    {"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.0, 10.0, false},
    {"8302-2", "Body Height", "cm", 50, 200, true},
    {"29463-7", "Body Weight", "kg", 3, 150, true},
    {"39156-5", "Body Mass Index", "kg/m2", 15, 40, true},
    {"8867-4", "Heart rate", "/min", 50, 120, true},
    {"9279-1", "Respiratory rate", "/min", 12, 24, true},
    {"8480-6", "Systolic Blood Pressure", "mm[Hg]", 90, 180, true},
    {"8462-4", "Diastolic Blood Pressure", "mm[Hg]", 50, 110, true},
    {"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 88, 100, true},
    {"72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", "{score}", 0, 10, true},
    {"2339-0", "Glucose", "mg/dL", 60, 250, false},
    {"6299-2", "Urea Nitrogen", "mg/dL", 5, 30, false},
    {"38483-4", "Creatinine", "mg/dL", 0.5, 1.5, false},
    {"49765-1", "Calcium", "mg/dL", 8.5, 10.5, false},
    {"2947-0", "Sodium", "mmol/L", 135, 145, false},
    {"6298-4", "Potassium", "mmol/L", 3.5, 5.1, false},
    {"2069-3", "Chloride", "mmol/L", 98, 107, false},
    {"20565-8", "Carbon Dioxide", "mmol/L", 22, 29, false},
    {"2093-3", "Total Cholesterol", "mg/dL", 120, 300, false},
    {"2571-8", "Triglycerides", "mg/dL", 50, 300, false},
    {"18262-6", "Low Density Lipoprotein Cholesterol", "mg/dL", 50, 200, false},
    {"2085-9", "High Density Lipoprotein Cholesterol", "mg/dL", 30, 90, false},
    {"6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4, 11, false},
    {"789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 4, 6, false},
    {"718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12, 17, false},
    {"4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 36, 50, false},
    {"787-2", "MCV [Entitic volume] by Automated count", "fL", 80, 100, false},
    {"777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400, false},
    {"33914-3", "Glomerular filtration rate/1.73 sq M.predicted", "mL/min/{1.73_m2}", 60, 120, false},
};
constexpr std::size_t kLoincCount = std::size(kLoinc);

constexpr int kEncountersPerPatient = 10;
constexpr int kObservationsPerEncounter = 10;
constexpr int kPerPatient = 1 + kEncountersPerPatient + kEncountersPerPatient * kObservationsPerEncounter;

template <class T, std::size_t N>
const T& pick(Rng& rng, const T (&list)[N]) {
  return list[std::uniform_int_distribution<std::size_t>(0, N - 1)(rng)];
}

// A version 4 UUID drawn from rng (deterministic ids that look like the server's own).
std::string uuid(Rng& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t a = rng(), b = rng();
  a = (a & ~0xf000ULL) | 0x4000ULL;              // version 4
  b = (b & ~(0xc0ULL << 56)) | (0x80ULL << 56);  // variant 10
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    unsigned byte = static_cast<unsigned>(((i < 8 ? a : b) >> (8 * (7 - i % 8))) & 0xff);
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0xf]);
  }
  return out;
}

// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
void civil(std::int64_t days, int& y, unsigned& m, unsigned& d) {
  days += 719468;
  std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  unsigned doe = static_cast<unsigned>(days - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t year = static_cast<std::int64_t>(yoe) + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(year + (m <= 2));
}

std::string date_of(std::int64_t days) {
  int y;
  unsigned m, d;
  civil(days, y, m, d);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", y, m, d);
  return buf;
}

// seconds since the epoch -> FHIR dateTime with a time zone
std::string datetime_of(std::int64_t seconds) {
  std::int64_t days = seconds / 86400, rem = seconds % 86400;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%sT%02d:%02d:%02d+00:00", date_of(days).c_str(), static_cast<int>(rem / 3600),
                static_cast<int>(rem / 60 % 60), static_cast<int>(rem % 60));
  return buf;
}

constexpr std::int64_t kDay1920 = -18263;          // 1920-01-01
constexpr std::int64_t kDay2020End = 18627;        // 2020-12-31
constexpr std::int64_t kSeconds2012 = 1325376000;  // 2012-01-01T00:00:00Z

struct Counts {
  std::atomic<std::int64_t> submitted{0}, written{0}, failed{0};
  std::mutex error_mutex;
  std::string first_error;
};

// Submits writes through the repository, at most `in_flight` at a time. So that every group commit is full
// (rather than the writer thread committing whatever little has queued while the threads preparing writes, which
// share the cores with it, catch up), a gate job is queued after every `group` writes: it holds the writer
// thread, inside its transaction, until the next `group` writes are queued behind it. A server under load from
// many clients fills its groups the same way, from its backlog.
class Writer {
 public:
  Writer(resources::Repository& repo, std::ptrdiff_t in_flight, std::size_t group, Counts& counts)
      : repo_(repo), slots_(in_flight), in_flight_(in_flight), group_(group), counts_(counts) {}

  void put(const char* type, const std::string& id, const std::string& text) {
    auto value = fhir::json::parse(text);
    if (!value) {
      fail(std::string(type) + "/" + id + ": generated JSON does not parse");
      return;
    }
    slots_.acquire();
    ++counts_.submitted;
    repo_.update_async(resources::kDefaultTenant, type, id, std::move(*value), std::nullopt, true,
                       [this, t = std::string(type), id](fhir::Result<resources::WriteOutcome> r) {
                         if (r) {
                           ++counts_.written;
                         } else {
                           std::string why = r.error().issues.empty() ? "?" : r.error().issues[0].diagnostics;
                           fail(t + "/" + id + ": " + why);
                         }
                         slots_.release();
                       });
    std::lock_guard lock(gate_mutex_);
    if (++since_gate_ < group_) return;
    since_gate_ = 0;
    if (gate_) gate_->open();
    gate_ = std::make_shared<Gate>();
    repo_.store().write_async(
        [gate = gate_](resources::Transaction&) -> fhir::Result<void> {
          gate->wait();
          return {};
        },
        [](fhir::Result<void>) {});
  }

  void fail(const std::string& why) {
    ++counts_.failed;
    std::lock_guard lock(counts_.error_mutex);
    if (counts_.first_error.empty()) counts_.first_error = why;
  }

  // Waits for every submitted write to be answered.
  void drain() {
    {
      std::lock_guard lock(gate_mutex_);
      if (gate_) gate_->open();
    }
    for (std::ptrdiff_t i = 0; i < in_flight_; ++i) slots_.acquire();
    for (std::ptrdiff_t i = 0; i < in_flight_; ++i) slots_.release();
  }

 private:
  struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool is_open = false;
    void open() {
      {
        std::lock_guard lock(m);
        is_open = true;
      }
      cv.notify_all();
    }
    void wait() {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return is_open; });
    }
  };

  resources::Repository& repo_;
  std::counting_semaphore<> slots_;
  std::ptrdiff_t in_flight_;
  std::size_t group_;
  Counts& counts_;
  std::mutex gate_mutex_;
  std::shared_ptr<Gate> gate_;
  std::size_t since_gate_ = 0;
};

struct Plan {
  std::int64_t organizations = 0, practitioners = 0, patients = 0;
  std::uint64_t seed = 42;
  std::vector<std::string> organization_ids, organization_names, practitioner_ids;
};

std::string ref(const char* type, const std::string& id) {
  return std::string("{\"reference\":\"") + type + "/" + id + "\"}";
}

std::string coding(const char* system, const char* code, const char* display) {
  return std::string("{\"system\":\"") + system + "\",\"code\":\"" + code + "\",\"display\":\"" + display + "\"}";
}

void make_organization(const Plan& plan, std::int64_t i, Writer& w) {
  Rng rng(plan.seed * 1000003 + 17 + static_cast<std::uint64_t>(i));
  const std::string& id = plan.organization_ids[static_cast<std::size_t>(i)];
  char phone[32];
  std::snprintf(phone, sizeof phone, "555-%04d", static_cast<int>(rng() % 10000));
  std::string t = "{\"resourceType\":\"Organization\",\"id\":\"" + id +
                  "\",\"identifier\":[{\"system\":\"https://github.com/synthetichealth/synthea\",\"value\":\"org-" +
                  std::to_string(i) + "\"}],\"active\":true,\"type\":[{\"coding\":[" +
                  coding("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider") +
                  "]}],\"name\":\"" + plan.organization_names[static_cast<std::size_t>(i)] +
                  "\",\"telecom\":[{\"system\":\"phone\",\"value\":\"" + phone + "\"}],\"address\":[{\"line\":[\"" +
                  std::to_string(1 + rng() % 900) + " Main Street\"],\"city\":\"" + kCities[i % std::size(kCities)] +
                  "\",\"state\":\"" + pick(rng, kStates) + "\",\"country\":\"US\"}]}";
  w.put("Organization", id, t);
}

void make_practitioner(const Plan& plan, std::int64_t i, Writer& w) {
  Rng rng(plan.seed * 1000003 + 29 + static_cast<std::uint64_t>(i) * 7919);
  const std::string& id = plan.practitioner_ids[static_cast<std::size_t>(i)];
  bool female = rng() % 2 == 0;
  std::string t = "{\"resourceType\":\"Practitioner\",\"id\":\"" + id +
                  "\",\"identifier\":[{\"system\":\"http://hl7.org/fhir/sid/us-npi\",\"value\":\"" +
                  std::to_string(9999900000LL + i) + "\"}],\"active\":true,\"name\":[{\"family\":\"" +
                  pick(rng, kFamilies) + "\",\"given\":[\"" +
                  (female ? pick(rng, kGivenFemale) : pick(rng, kGivenMale)) +
                  "\"],\"prefix\":[\"Dr.\"]}],\"gender\":\"" + (female ? "female" : "male") + "\"}";
  w.put("Practitioner", id, t);
}

// The patient's id alone (the manifest lists some without generating them twice).
std::string patient_id(const Plan& plan, std::int64_t p) {
  Rng rng(plan.seed * 7777777 + static_cast<std::uint64_t>(p));
  return uuid(rng);
}

struct PatientFacts {
  std::string family;
  std::int64_t birth_day = 0;
  std::size_t organization = 0;
};

PatientFacts make_patient(const Plan& plan, std::int64_t p, Writer* w) {
  Rng rng(plan.seed * 7777777 + static_cast<std::uint64_t>(p));
  std::string pid = uuid(rng);
  PatientFacts facts;
  // 1 % Smith, the rest uniform over the other family names.
  facts.family = rng() % 100 == 0 ? "Smith" : pick(rng, kFamilies);
  bool female = rng() % 2 == 0;
  facts.birth_day = std::uniform_int_distribution<std::int64_t>(kDay1920, kDay2020End)(rng);
  facts.organization = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(plan.organizations));
  std::size_t gp = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(plan.practitioners));
  const char* given1 = female ? pick(rng, kGivenFemale) : pick(rng, kGivenMale);
  const char* given2 = female ? pick(rng, kGivenFemale) : pick(rng, kGivenMale);
  const char* city = pick(rng, kCities);
  char phone[32];
  std::snprintf(phone, sizeof phone, "555-%03d-%04d", static_cast<int>(rng() % 1000), static_cast<int>(rng() % 10000));
  std::string patient =
      "{\"resourceType\":\"Patient\",\"id\":\"" + pid + "\",\"identifier\":[{\"type\":{\"coding\":[" +
      coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number") +
      "]},\"system\":\"http://hospital.example.org/mrn\",\"value\":\"MRN-" + std::to_string(1000000 + p) +
      "\"}],\"active\":true,\"name\":[{\"use\":\"official\",\"family\":\"" + facts.family + "\",\"given\":[\"" +
      given1 + "\",\"" + given2 + "\"]}],\"telecom\":[{\"system\":\"phone\",\"value\":\"" + phone +
      "\",\"use\":\"home\"}],\"gender\":\"" + (female ? "female" : "male") + "\",\"birthDate\":\"" +
      date_of(facts.birth_day) + "\",\"address\":[{\"line\":[\"" + std::to_string(1 + rng() % 9999) +
      " Oak Street\"],\"city\":\"" + city + "\",\"state\":\"" + pick(rng, kStates) + "\",\"postalCode\":\"" +
      std::to_string(10000 + rng() % 89999) + "\",\"country\":\"US\"}],\"generalPractitioner\":[" +
      ref("Practitioner", plan.practitioner_ids[gp]) +
      "],\"managingOrganization\":" + ref("Organization", plan.organization_ids[facts.organization]) + "}";
  if (w == nullptr) return facts;
  w->put("Patient", pid, patient);

  bool diabetic = p % 10 == 3;
  std::int64_t t = kSeconds2012 + static_cast<std::int64_t>(rng() % (365 * 86400));
  int obs_index = 0;
  for (int e = 0; e < kEncountersPerPatient; ++e) {
    t += 86400 * static_cast<std::int64_t>(60 + rng() % 240) + static_cast<std::int64_t>(rng() % 36000);
    std::string eid = uuid(rng);
    std::size_t doctor = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(plan.practitioners));
    std::string encounter =
        "{\"resourceType\":\"Encounter\",\"id\":\"" + eid +
        "\",\"status\":\"finished\",\"class\":{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\","
        "\"code\":\"AMB\"},\"type\":[{\"coding\":[" +
        coding("http://snomed.info/sct", "185349003", "Encounter for check up (procedure)") +
        "],\"text\":\"Encounter for check up (procedure)\"}],\"subject\":" + ref("Patient", pid) +
        ",\"participant\":[{\"individual\":" + ref("Practitioner", plan.practitioner_ids[doctor]) +
        "}],\"period\":{\"start\":\"" + datetime_of(t) + "\",\"end\":\"" + datetime_of(t + 1800) +
        "\"},\"serviceProvider\":" + ref("Organization", plan.organization_ids[facts.organization]) + "}";
    w->put("Encounter", eid, encounter);
    for (int o = 0; o < kObservationsPerEncounter; ++o, ++obs_index) {
      std::size_t code;
      if (obs_index % 5 == 0) {
        code = 0;  // 8310-5
      } else if (diabetic && obs_index % 20 == 1) {
        code = 1;  // 4548-4
      } else {
        code = 2 + static_cast<std::size_t>(rng() % (kLoincCount - 2));
      }
      const Loinc& l = kLoinc[code];
      double value = std::uniform_real_distribution<double>(l.low, l.high)(rng);
      char number[32];
      std::snprintf(number, sizeof number, "%.1f", value);
      std::string oid = uuid(rng);
      std::string when = datetime_of(t + 60 * (o + 1));
      std::string observation =
          "{\"resourceType\":\"Observation\",\"id\":\"" + oid + "\",\"status\":\"final\",\"category\":[{\"coding\":[" +
          coding("http://terminology.hl7.org/CodeSystem/observation-category", l.vital ? "vital-signs" : "laboratory",
                 l.vital ? "vital-signs" : "laboratory") +
          "]}],\"code\":{\"coding\":[" + coding("http://loinc.org", l.code, l.display) + "],\"text\":\"" + l.display +
          "\"},\"subject\":" + ref("Patient", pid) + ",\"encounter\":" + ref("Encounter", eid) +
          ",\"effectiveDateTime\":\"" + when + "\",\"issued\":\"" + when + "\",\"performer\":[" +
          ref("Practitioner", plan.practitioner_ids[doctor]) + "],\"valueQuantity\":{\"value\":" + number +
          ",\"unit\":\"" + l.unit + "\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"" + l.unit + "\"}}";
      w->put("Observation", oid, observation);
    }
  }
  return facts;
}

// Copies of the Synthea bundle's resources: in copy c every uuid u becomes u with its first 8 hex digits
// replaced by c, and every "urn:uuid:u" reference becomes "Type/<new id>".
std::int64_t load_synthea(const std::string& path, int copies, Writer& w) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << "caduceus_gen: cannot read " << path << " (use --synthea-copies 0 to go without)\n";
    return -1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto bundle = fhir::json::parse(ss.str());
  if (!bundle || bundle->find("entry") == nullptr) {
    std::cerr << "caduceus_gen: " << path << " is not a Bundle with entries\n";
    return -1;
  }
  struct Entry {
    std::string type, uuid, text;
  };
  std::vector<Entry> entries;
  for (const auto& entry : bundle->find("entry")->items()) {
    const auto* resource = entry.find("resource");
    const auto* full_url = entry.find("fullUrl");
    if (resource == nullptr || full_url == nullptr || !full_url->is_string()) continue;
    std::string u = full_url->text();
    if (u.rfind("urn:uuid:", 0) != 0) continue;
    entries.push_back({resource->find("resourceType")->text(), u.substr(9), fhir::json::write(*resource)});
  }
  std::int64_t n = 0;
  for (int c = 0; c < copies; ++c) {
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%08x", static_cast<unsigned>(0x5e000000u + static_cast<unsigned>(c)));
    auto renamed = [&](const std::string& u) { return std::string(prefix) + u.substr(8); };
    for (const Entry& e : entries) {
      std::string text = e.text;
      for (const Entry& target : entries) {
        std::string from = "urn:uuid:" + target.uuid, to = target.type + "/" + renamed(target.uuid);
        for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size())
          text.replace(pos, from.size(), to);
      }
      std::string from = "\"" + e.uuid + "\"", to = "\"" + renamed(e.uuid) + "\"";
      for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size())
        text.replace(pos, from.size(), to);
      w.put(e.type.c_str(), renamed(e.uuid), text);
      ++n;
    }
  }
  return n;
}

int run(int argc, char** argv) {
  std::string db, manifest, synthea = CADUCEUS_BENCH_DATA "/synthea-bundle.json";
  std::int64_t resources_wanted = 1000000;
  std::uint64_t seed = 42;
  int threads = 2, synthea_copies = 100;
  std::ptrdiff_t in_flight = 8192;
  std::size_t group = 1024;
  bool sync_full = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--db")
      db = next();
    else if (a == "--resources")
      resources_wanted = std::stoll(next());
    else if (a == "--seed")
      seed = std::stoull(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--in-flight")
      in_flight = std::stoll(next());
    else if (a == "--group")
      group = std::stoull(next());
    else if (a == "--synthea")
      synthea = next();
    else if (a == "--synthea-copies")
      synthea_copies = std::stoi(next());
    else if (a == "--manifest")
      manifest = next();
    else if (a == "--sync-full")
      sync_full = true;
    else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      std::cerr << "caduceus_gen: unknown option " << a << "\n\n" << kUsage;
      return 2;
    }
  }
  if (db.rfind("sqlite:", 0) != 0 || db == "sqlite::memory:" || threads < 1 || group < 1 ||
      in_flight <= 2 * static_cast<std::ptrdiff_t>(group) + 1 || resources_wanted < 1) {
    std::cerr << kUsage;
    return 2;
  }
  std::string path = db.substr(7);
  if (std::filesystem::exists(path)) {
    std::cerr << "caduceus_gen: " << path << " exists; the generator only fills a new database\n";
    return 2;
  }
  if (manifest.empty()) manifest = path + ".manifest";

  auto definitions = resources::Definitions::load(conformance::r4_model_json());
  auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json(),
                                                           conformance::r4_compartments_json());
  if (!definitions || !registry) {
    std::cerr << "caduceus_gen: cannot load the R4 definitions\n";
    return 1;
  }
  auto indexer = resources::SearchIndexer::create(**definitions, **registry);
  if (!indexer) {
    std::cerr << "caduceus_gen: cannot create the search indexer\n";
    return 1;
  }
  resources::StructureChecker checker(**definitions);
  resources::StoreOptions options;
  options.synchronous_full = sync_full;
  options.readers = 1;
  options.cache_bytes = 0;
  options.max_group = group + 1;
  auto store = resources::open_store(db, options);
  if (!store) {
    for (const auto& issue : store.error().issues) std::cerr << "caduceus_gen: " << issue.diagnostics << "\n";
    return 1;
  }
  resources::Repository repo(**store, **definitions, checker, indexer->get());

  Plan plan;
  plan.seed = seed;
  plan.organizations = std::max<std::int64_t>(1, resources_wanted / 10000);
  plan.practitioners = std::max<std::int64_t>(1, resources_wanted / 1000);
  plan.patients = std::max<std::int64_t>(1, (resources_wanted - plan.organizations - plan.practitioners) / kPerPatient);
  Rng ids(seed);
  for (std::int64_t i = 0; i < plan.organizations; ++i) {
    plan.organization_ids.push_back(uuid(ids));
    std::size_t combos = std::size(kCities) * std::size(kOrgKinds);
    std::string name = std::string(kCities[static_cast<std::size_t>(i) % std::size(kCities)]) + " " +
                       kOrgKinds[static_cast<std::size_t>(i) / std::size(kCities) % std::size(kOrgKinds)];
    if (static_cast<std::size_t>(i) >= combos) name += " " + std::to_string(static_cast<std::size_t>(i) / combos + 1);
    plan.organization_names.push_back(name);
  }
  for (std::int64_t i = 0; i < plan.practitioners; ++i) plan.practitioner_ids.push_back(uuid(ids));

  Counts counts;
  Writer writer(repo, in_flight, group, counts);
  auto started = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < plan.organizations; ++i) make_organization(plan, i, writer);
  for (std::int64_t i = 0; i < plan.practitioners; ++i) make_practitioner(plan, i, writer);
  std::int64_t synthea_written = 0;
  if (synthea_copies > 0) {
    synthea_written = load_synthea(synthea, synthea_copies, writer);
    if (synthea_written < 0) return 1;
  }
  std::atomic<std::int64_t> next_patient{0};
  std::vector<std::thread> workers;
  std::atomic<bool> stop{false};
  std::thread progress([&] {
    std::int64_t total = plan.organizations + plan.practitioners + plan.patients * kPerPatient + synthea_written;
    while (!stop) {
      for (int k = 0; k < 100 && !stop; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (stop) break;
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::fprintf(stderr, "caduceus_gen: %" PRId64 " of %" PRId64 " written (%.0f s, %.0f/s)\n", counts.written.load(),
                   total, s, static_cast<double>(counts.written.load()) / s);
    }
  });
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (std::int64_t p; (p = next_patient++) < plan.patients && counts.failed == 0;) make_patient(plan, p, &writer);
    });
  }
  for (auto& t : workers) t.join();
  writer.drain();
  stop = true;
  progress.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  store->reset();  // closes the database (checkpoints the WAL)

  if (counts.failed > 0) {
    std::cerr << "caduceus_gen: " << counts.failed << " writes failed; the first: " << counts.first_error << "\n";
    return 1;
  }

  // What was made, and ids to query.
  std::int64_t smiths = 0, born_le_1950 = 0;
  std::vector<std::int64_t> per_org(static_cast<std::size_t>(plan.organizations));
  constexpr std::int64_t kDay1951 = -6940;  // 1951-01-01
  for (std::int64_t p = 0; p < plan.patients; ++p) {
    PatientFacts f = make_patient(plan, p, nullptr);
    smiths += f.family == "Smith";
    born_le_1950 += f.birth_day < kDay1951;
    ++per_org[f.organization];
  }
  std::ofstream out(manifest);
  out << "# caduceus_gen --resources " << resources_wanted << " --seed " << seed << "\n";
  for (std::int64_t p = 0; p < std::min<std::int64_t>(plan.patients, 200); ++p)
    out << "patient " << patient_id(plan, p * std::max<std::int64_t>(1, plan.patients / 200)) << "\n";
  for (std::int64_t p = 3; p < plan.patients && p < 2000; p += 10)
    out << "diabetic-patient " << patient_id(plan, p) << "\n";
  for (std::int64_t i = 0; i < plan.organizations; ++i)
    out << "organization-name " << plan.organization_names[i] << "\n";
  for (std::int64_t i = 0; i < std::min<std::int64_t>(plan.practitioners, 200); ++i)
    out << "practitioner " << plan.practitioner_ids[static_cast<std::size_t>(i)] << "\n";
  out.close();

  std::int64_t observations = plan.patients * kEncountersPerPatient * kObservationsPerEncounter;
  std::printf("caduceus_gen: wrote %" PRId64 " resources to %s in %.1f s (%.0f per second)\n", counts.written.load(),
              path.c_str(), seconds, static_cast<double>(counts.written.load()) / seconds);
  std::printf("  Organization %" PRId64 ", Practitioner %" PRId64 ", Patient %" PRId64 ", Encounter %" PRId64
              ", Observation %" PRId64 ", Synthea copies %d (%" PRId64 " resources)\n",
              plan.organizations, plan.practitioners, plan.patients, plan.patients * kEncountersPerPatient,
              observations, synthea_copies, synthea_written);
  std::printf("  Observation code 8310-5: %" PRId64 " (20 per patient); 4548-4: %" PRId64 " (patients with it: %" PRId64
              ")\n",
              plan.patients * 20, (plan.patients + 6) / 10 * 5, (plan.patients + 6) / 10);
  std::printf("  Patient family Smith (name=smi): %" PRId64 "; born 1950 or before: %" PRId64
              "; patients per organization: about %" PRId64 "\n",
              smiths, born_le_1950, plan.patients / plan.organizations);
  std::printf("  for example: Observation?patient=%s&code=http://loinc.org|8310-5\n", patient_id(plan, 0).c_str());
  std::printf("               Observation?patient.organization.name=%s\n", plan.organization_names[0].c_str());
  std::printf("  manifest (ids and names to query): %s\n", manifest.c_str());
  std::error_code ec;
  auto bytes = std::filesystem::file_size(path, ec);
  if (!ec) std::printf("  database size: %.1f MiB\n", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "caduceus_gen: " << e.what() << "\n\n" << kUsage;
    return 2;
  }
}

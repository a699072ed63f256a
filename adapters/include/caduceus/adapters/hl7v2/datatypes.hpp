#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/hl7v2/time_zone.hpp"
#include "caduceus/fhir/json.hpp"

// The v2-to-FHIR IG's data type maps (its datatypes/*.csv), each from one repetition of one field of a segment.
// Shared by every message mapper; each answers nullopt when the field yields nothing (empty, or only the v2 null
// `""`).
namespace caduceus::adapters::hl7v2 {

// A component's decoded text, trimmed; "" when absent and for the v2 null `""`.
std::string component(const Segment& s, std::size_t field, std::size_t rep, std::size_t c, std::size_t sub = 1);

// CX -> Identifier: CX.1 value, CX.4 (HD) system (urn:oid: for ISO, urn:uuid: for UUID, URI as is) and assigner
// display (namespace id), CX.5 type (v2-0203), CX.7/CX.8 period.
std::optional<fhir::json::Value> map_cx(const Segment& s, std::size_t field, std::size_t rep);
// XPN -> HumanName: XPN.1 family, .2/.3 given, .4 suffix, .5 prefix, .6 suffix, .7 use (table 0200), .12/.13 period.
std::optional<fhir::json::Value> map_xpn(const Segment& s, std::size_t field, std::size_t rep);
// XAD -> Address: .1.1 and .2 line, .3 city, .4 state, .5 postalCode, .6 country, .7 use/type (0190), .9
// district, .13/.14 period.
std::optional<fhir::json::Value> map_xad(const Segment& s, std::size_t field, std::size_t rep);
// XTN -> ContactPoint: system from .3 (0202), value .12, else built from .5 .6 .7 .8, else .1 (email: .4); use
// from .2 (0201; CP: mobile), else `default_use`.
std::optional<fhir::json::Value> map_xtn(const Segment& s, std::size_t field, std::size_t rep,
                                         std::string_view default_use);
// CWE/CE -> Coding of the first triplet (.1 code, .2 display, .3 system) or the alternate one (.4 .5 .6).
// `default_system`: the system when the triplet names none (e.g. the HL7 table of the field).
std::optional<fhir::json::Value> map_cwe_coding(const Segment& s, std::size_t field, std::size_t rep,
                                                std::string_view default_system = {}, bool alternate = false);
// CWE/CE -> CodeableConcept: both codings, and text = .9 (original text), else .2 when no coding has a code.
std::optional<fhir::json::Value> map_cwe(const Segment& s, std::size_t field, std::size_t rep,
                                         std::string_view default_system = {});
// XCN (a person in a field such as PV1-7) -> Reference with identifier (.1, assigner .9) and display (given
// family); nullopt when it names nobody.
std::optional<fhir::json::Value> map_xcn_reference(const Segment& s, std::size_t field, std::size_t rep);

// A v2 coding system name (CWE.3, table 0396) as a FHIR system URI: LN, SCT, I10, I9C, UCUM, CVX, RXNORM, NDC,
// HL7nnnn (HL7 table nnnn: http://terminology.hl7.org/CodeSystem/v2-nnnn), or a URI / urn:oid as is; "" when
// unknown.
std::string coding_system_uri(std::string_view name);
// HD (a universal id and its type, as in CX.4, EI.3/4, XCN.9) -> an identifier system: urn:oid: for ISO, urn:uuid:
// for UUID, the id itself for URI; "" for other types or none.
std::string hd_system(std::string_view universal_id, std::string_view type);

// A v2 date/time (DT, DTM, TS.1: YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) as a FHIR date with the same precision
// (YYYY, YYYY-MM, YYYY-MM-DD; a time part is dropped). nullopt when the text is not such a date.
std::optional<std::string> v2_date_to_fhir_date(std::string_view text);
// The same as a FHIR dateTime: a date alone keeps its precision (YYYY, YYYY-MM, YYYY-MM-DD); a time becomes
// Thh:mm:ss (FHIR has no hour or minute precision: the missing parts are 00), fractions of a second kept, with
// the text's offset, or else the offset `zone` has at that local time. nullopt when the text is not a date/time.
std::optional<std::string> v2_datetime_to_fhir(std::string_view text, const TimeZone& zone);

}  // namespace caduceus::adapters::hl7v2

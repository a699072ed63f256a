#pragma once

// Orders, results, pharmacy and scheduling: ORU^R01, ORM^O01, OML^O21, RDE^O11, SIU^S12/S13/S14/S15/S26 to FHIR,
// after the v2-to-FHIR IG (its segment and data type maps; our own for RXE, which the IG has not finished). Every
// resource is written as a conditional update on an identifier, so that a message sent again, or a later one about
// the same order, result, prescription or appointment, updates instead of adding. The README ("HL7 v2: orders,
// results, prescriptions, appointments") lists the maps.

#include <optional>
#include <string>
#include <string_view>

#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::adapters::hl7v2 {

// A v2 number (NM: [+|-]digits[.digits]) as a FHIR decimal literal ("+007.50" -> "7.50", ".5" -> "0.5");
// nullopt when it is not a number.
std::optional<std::string> v2_decimal(std::string_view text);

// A v2 coding system name (HL7 table 0396: LN, SCT, UCUM, HL70078, ...) as the FHIR system URI; "" when it has
// none we know (local codes): the coding then has no system.
std::string code_system_uri(std::string_view v2_name);

// CWE/CE/CNE (one repetition) -> CodeableConcept, for orders and results (datatypes.hpp map_cwe is the ADT one,
// with a default system per field; to be made one): CWE.1-3 the first coding, CWE.4-6 the second, CWE.10-12 the
// third, CWE.7/8 their versions, CWE.9 the text. nullopt when empty.
std::optional<fhir::json::Value> map_cwe_triplets(const Segment& s, std::size_t field, std::size_t rep = 1);

// EI (one repetition; its components, or the subcomponents of component `component` when not 0, as in EIP and
// SPS) -> Identifier: EI.1 value, EI.3 with EI.4 ISO/UUID/URI the system, EI.2 the assigner's display; with a
// v2-0203 type when `type_code` is not empty (PLAC, FILL, PGN). nullopt when EI.1 is empty.
std::optional<fhir::json::Value> map_ei(const Segment& s, std::size_t field, std::size_t rep, std::size_t component,
                                        std::string_view type_code);

// XCN (one repetition) -> a logical Reference: identifier (XCN.1, system from XCN.9) and display ("given middle
// family"), with `type` (e.g. "Practitioner") when not empty. nullopt when empty.
std::optional<fhir::json::Value> map_xcn_reference(const Segment& s, std::size_t field, std::size_t rep,
                                                   std::string_view type);

// ORU^R01: per order (ORC/OBR and what follows them), a ServiceRequest, the Specimens (SPM, else OBR-15), an
// Observation per OBX and a DiagnosticReport; the Patient from PID first. One transaction per message.
Mapping map_oru_r01(const Message& message);
// ORM^O01 and OML^O21: the Patient, and a ServiceRequest per order (ORC with its OBR).
Mapping map_orm_o01(const Message& message);
// RDE^O11: the Patient, and a MedicationRequest per order (ORC, RXE, RXR, TQ1).
Mapping map_rde_o11(const Message& message);
// SIU^S12 (booked), S13 (rescheduled), S14 (modified), S15 (cancelled), S26 (no-show): the Patient (when there
// is a PID) and the Appointment (SCH, TQ1, AIS/AIG/AIL/AIP).
Mapping map_siu(const Message& message);

}  // namespace caduceus::adapters::hl7v2

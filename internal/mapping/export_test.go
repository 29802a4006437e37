package mapping

import "github.com/hiegw/hiegw/internal/fhir"

var fhirStableID = fhir.StableID

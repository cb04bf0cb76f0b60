"""Currency codes and letter symbols of every CLDR locale (Babel 2.19.0),
upper-cased; written by scripts/gen_currencies.py, do not edit."""

CURRENCIES: frozenset[str] = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "AR", "ARS", "ATS", "AUD", "AWG", "AZN",
    "BAM", "BBD", "BDT", "BEF", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BR", "BRL",
    "BS", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CF", "CFP", "CG", "CHF",
    "CLP", "CNH", "CNY", "COP", "CRC", "CSK", "CUC", "CUP", "CVE", "CYP", "CZK", "DA",
    "DB", "DEN", "DJF", "DKK", "DKR", "DOP", "DT", "DZD", "ECU", "EEK", "EGP", "ERN",
    "ESP", "ETB", "EUR", "FB", "FBU", "FC", "FDJ", "FG", "FIM", "FJD", "FKP", "FRF",
    "FT", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GRD", "GTQ", "GYD", "HKD", "HNL",
    "HRK", "HTG", "HUF", "IDR", "IEP", "IKR", "ILP", "ILR", "ILS", "INR", "IQD", "IRR",
    "ISK", "ITL", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KM", "KMF", "KN", "KPW",
    "KR", "KRW", "KSH", "KWD", "KYD", "KZ", "KZT", "LAK", "LBP", "LE", "LKR", "LRD",
    "LS", "LSL", "LUF", "LVL", "LYD", "MAD", "MDL", "MGA", "MK", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MTN", "MTP", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NFK",
    "NGN", "NIO", "NIS", "NKR", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PTE", "PYG", "QAR", "RF", "RHD", "RM", "RON", "RP", "RS", "RSD",
    "RUB", "RUR", "RWF", "SAR", "SBD", "SCR", "SDD", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SLL", "SOS", "SR", "SRD", "SSP", "STN", "SYP", "SZL", "THB", "TJS", "TMT", "TND",
    "TOP", "TRY", "TSH", "TTD", "TWD", "TZS", "UAH", "UAK", "UGX", "UM", "UP", "USD",
    "USH", "UYU", "UYW", "UZS", "VEF", "VES", "VND", "VT", "VUV", "WST", "XAF", "XCD",
    "XCG", "XEU", "XOF", "XPF", "XXX", "YER", "ZAR", "ZIG", "ZMW", "ZWG",
})
